// The luks format's guest module: binds probe, info, open (luks_format.h) and the write side:
// create, create_writer, open_writer (luks_create.h) and edit (luks_edit.h: resize).
#include "luks_create.h"
#include "luks_edit.h"
#include "luks_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("luks", instar::luks::probe, instar::luks::info, nullptr, instar::luks::create,
                               instar::luks::open, instar::luks::create_writer, instar::luks::open_writer, nullptr,
                               instar::luks::edit)
