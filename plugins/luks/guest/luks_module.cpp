// The luks format's guest module: binds probe, info, open (luks_format.h) and the write side:
// create, create_writer, open_writer (luks_create.h).
#include "luks_create.h"
#include "luks_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_W("luks", instar::luks::probe, instar::luks::info, nullptr, instar::luks::create,
                       instar::luks::open, instar::luks::create_writer, instar::luks::open_writer)
