// The dmg format's guest module: probe/info (dmg_format) and the reader (dmg_read). qemu cannot
// create, write or check dmg images, so neither can instar.
#include "dmg_format.h"
#include "dmg_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("dmg", instar::dmg::probe, instar::dmg::info, nullptr, nullptr, instar::dmg::open, nullptr)
