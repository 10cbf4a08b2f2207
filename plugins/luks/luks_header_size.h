// What a LUKS header costs before the data, for `measure`: shared by the luks plugin's hooks
// (luks_measure.cpp) and the qcow2 plugin's (encrypt.format=luks), as qemu shares block/crypto's
// arithmetic between its luks and qcow2 drivers.
#pragma once

#include "instar/measure.h"

#include <cstdint>
#include <string_view>

namespace instar::luks {

// What the luks plugin's LUKS2 creation puts before the data (guest/luks2_create.cpp: cryptsetup's
// default 16 MiB segment offset), whatever the cipher.
inline constexpr std::uint64_t LUKS2_NEW_SEGMENT_OFFSET = 16u << 20;

// block_crypto_measure / qcow2_measure's LUKS part for the options under `prefix` ("" for a luks
// target, "encrypt." for qcow2's), in qemu's order: the QAPI visitor of
// QCryptoBlockCreateOptionsLUKS, then qcrypto_block_luks_create's checks, then
// qcrypto_block_calculate_payload_offset. `luks-version` (the luks plugin's extension) is read only
// with the empty prefix. False: `error` holds qemu's message.
bool luks_header_size(const MeasureRequest& r, std::string_view prefix, std::uint64_t& size, char* error);

} // namespace instar::luks
