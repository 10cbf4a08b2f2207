// The bochs format's guest module: probe and info (bochs_format) and the reader (bochs_read).
// qemu's bochs driver is read-only: no create, no writer, no check.
#include "bochs_format.h"
#include "bochs_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("bochs", instar::bochs::probe, instar::bochs::info, nullptr, nullptr, instar::bochs::open,
                     nullptr)
