// The vdi format's guest module: binds probe, info, create, the reader, the writers, check and edit.
#include "vdi_check.h"
#include "vdi_create.h"
#include "vdi_edit.h"
#include "vdi_format.h"
#include "vdi_read.h"
#include "vdi_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("vdi", instar::vdi::probe, instar::vdi::info, nullptr, instar::vdi::create,
                               instar::vdi::open, instar::vdi::create_writer, instar::vdi::open_writer,
                               instar::vdi::check, instar::vdi::edit)
