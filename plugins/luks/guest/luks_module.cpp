// The luks format's guest module: binds probe, info and open (luks_format.h).
#include "luks_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("luks", instar::luks::probe, instar::luks::info, nullptr, nullptr, instar::luks::open, nullptr)
