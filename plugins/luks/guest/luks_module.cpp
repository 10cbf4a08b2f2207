// The luks format's guest module: binds probe, info, open (luks_format.h) and the write side:
// create, create_writer, open_writer (luks_create.h) and edit (luks_edit.h: resize), with LUKS2
// read in front of probe, info and open and refused to open_writer and edit (luks2_format.h).
#include "luks2_format.h"
#include "luks_create.h"
#include "luks_edit.h"
#include "luks_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("luks", instar::luks::luks_any_probe, instar::luks::luks_any_info, nullptr,
                               instar::luks::create, instar::luks::luks_any_open, instar::luks::create_writer,
                               instar::luks::luks_any_open_writer, nullptr, instar::luks::luks_any_edit)
