// qemu's block-layer options that name the --object secret holding an image's key. A plugin's
// FormatDescriptor::secret_option must be one of them (descriptor_check), and instar's image-name
// parser accepts them, and their backing.[...] forms, as strong options (cli/image_name.h) before it
// knows the format. Before a probe a backing level's key is the first of these it names
// (BackingKey::for_option); secret_id without a format takes the last (cli/secrets.h).
#pragma once

#include <string_view>

namespace instar {

inline constexpr std::string_view QEMU_SECRET_OPTIONS[] = {"key-secret", "encrypt.key-secret"};

} // namespace instar
