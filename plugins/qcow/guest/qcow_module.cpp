// The qcow format's guest module: probe/info (qcow_format), create and convert's writer
// (qcow_create, qcow_write), the reader (qcow_read) and qemu's refusals of resize and rebase
// (qcow_edit). qemu has no check for qcow.
#include "qcow_create.h"
#include "qcow_edit.h"
#include "qcow_format.h"
#include "qcow_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("qcow", instar::qcow::probe, instar::qcow::info, nullptr, instar::qcow::create,
                               instar::qcow::open, instar::qcow::create_writer, instar::qcow::open_writer, nullptr,
                               instar::qcow::edit)
