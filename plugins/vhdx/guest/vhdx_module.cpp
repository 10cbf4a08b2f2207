// The vhdx format's guest module: binds vhdx_format's probe and info, vhdx_create's create and vhdx_read's open.
#include "vhdx_check.h"
#include "vhdx_create.h"
#include "vhdx_edit.h"
#include "vhdx_existing_write.h"
#include "vhdx_format.h"
#include "vhdx_read.h"
#include "vhdx_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("vhdx", instar::vhdx::probe, instar::vhdx::info, nullptr, instar::vhdx::create,
                               instar::vhdx::open, instar::vhdx::create_writer, instar::vhdx::open_writer, instar::vhdx::check,
                               instar::vhdx::edit)
