// Magic numbers of image formats instar recognises but does not support (see detect_other).
#pragma once

#include <stdint.h>

namespace instar::raw {

// ISO 9660 (ECMA-119 8.1): the first volume descriptor is at sector 16 (2048-byte sectors); its
// standard identifier "CD001" follows the type byte.
inline constexpr uint64_t ISO9660_IDENTIFIER_OFFSET = 16 * 2048 + 1;
inline constexpr char ISO9660_IDENTIFIER[] = "CD001";
// VDI (qemu block/vdi.c): signature 0xbeda107f, little-endian, at offset 64 of the header.
inline constexpr uint64_t VDI_SIGNATURE_OFFSET = 64;
inline constexpr uint32_t VDI_SIGNATURE = 0xbeda107f;
// QED (docs/interop/qed_spec.txt): "QED\0" at offset 0.
inline constexpr char QED_MAGIC[] = "QED";
// LUKS 1 and 2 (LUKS on-disk format specifications): "LUKS\xba\xbe" at offset 0.
inline constexpr uint8_t LUKS_MAGIC[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
// qcow version 1 (qemu block/qcow.c): "QFI\xfb", then big-endian version 1 (qcow2 has 2 or 3).
inline constexpr uint8_t QCOW_MAGIC[4] = {'Q', 'F', 'I', 0xfb};
inline constexpr uint32_t QCOW_VERSION = 1;
// DMG (Apple UDIF): a 512-byte "koly" trailer at the end of the file.
inline constexpr uint64_t DMG_TRAILER_SIZE = 512;
inline constexpr char DMG_KOLY_MAGIC[] = "koly";
// Parallels (qemu block/parallels.c, docs/interop/parallels.txt): one of two 16-byte magics,
// then little-endian version 2.
inline constexpr char PARALLELS_MAGIC[] = "WithoutFreeSpace";
inline constexpr char PARALLELS_MAGIC2[] = "WithouFreSpacExt";
inline constexpr uint32_t PARALLELS_VERSION = 2;
// Bochs (qemu block/bochs.c): NUL-terminated magic, type and subtype strings, then a version.
inline constexpr char BOCHS_MAGIC[] = "Bochs Virtual HD Image"; // 32-byte field at 0
inline constexpr char BOCHS_REDOLOG_TYPE[] = "Redolog";        // 16-byte field at 32
inline constexpr char BOCHS_GROWING_TYPE[] = "Growing";        // 16-byte field at 48
inline constexpr uint32_t BOCHS_HEADER_VERSION = 0x00020000;
inline constexpr uint32_t BOCHS_HEADER_V1 = 0x00010000;
// cloop (qemu block/cloop.c): the V2.0 shell-script preamble.
inline constexpr char CLOOP_MAGIC_V2_0[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

} // namespace instar::raw
