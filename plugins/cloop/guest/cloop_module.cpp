// The cloop format's guest module: probe and info (cloop_format) and the reader (cloop_read).
// qemu's cloop driver is read-only: no create, no writer, no check.
#include "cloop_format.h"
#include "cloop_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("cloop", instar::cloop::probe, instar::cloop::info, nullptr, nullptr, instar::cloop::open,
                     nullptr)
