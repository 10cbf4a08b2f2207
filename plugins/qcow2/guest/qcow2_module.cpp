// The qcow2 format's guest module: binds qcow2_format's probe and info, qcow2_create's emitter,
// qcow2_read's reader, qcow2_write's convert writer and qcow2_check's consistency check.
#include "qcow2_check.h"
#include "qcow2_create.h"
#include "qcow2_edit.h"
#include "qcow2_existing_write.h"
#include "qcow2_format.h"
#include "qcow2_read.h"
#include "qcow2_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("qcow2", instar::qcow2::probe, instar::qcow2::info, nullptr, instar::qcow2::create,
                               instar::qcow2::open, instar::qcow2::create_writer, instar::qcow2::open_writer,
                               instar::qcow2::check, instar::qcow2::edit)
