// The qcow2 format's guest module: binds qcow2_format's probe and info and qcow2_create's emitter.
#include "qcow2_create.h"
#include "qcow2_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("qcow2", instar::qcow2::probe, instar::qcow2::info, nullptr, instar::qcow2::create, nullptr, nullptr)
