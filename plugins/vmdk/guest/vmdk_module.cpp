// The vmdk format's guest module: binds vmdk_format's probe and info, vmdk_create's create,
// vmdk_read's open, vmdk_write's create_writer and vmdk_existing_write's open_writer.
#include "vmdk_check.h"
#include "vmdk_create.h"
#include "vmdk_edit.h"
#include "vmdk_existing_write.h"
#include "vmdk_format.h"
#include "vmdk_read.h"
#include "vmdk_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("vmdk", instar::vmdk::probe, instar::vmdk::info, nullptr, instar::vmdk::create,
                               instar::vmdk::open, instar::vmdk::create_writer, instar::vmdk::open_writer, instar::vmdk::check,
                               instar::vmdk::edit)
