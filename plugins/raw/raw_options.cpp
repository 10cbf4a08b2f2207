// raw's `-o` table: the format level has only `size` (preallocation etc. belong to the file protocol,
// whose table lives in core and is merged in when a target filename is given, as in qemu-img).
#include "raw_plugin.h"

namespace instar::raw {

const OptionDesc OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", OptionPolicy::Honoured, nullptr, nullptr, 0, 0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

} // namespace instar::raw
