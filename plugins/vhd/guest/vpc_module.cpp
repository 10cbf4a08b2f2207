// The vpc format's guest module: binds vpc_format's probe and info, vpc_create's create and vpc_read's open.
#include "vpc_create.h"
#include "vpc_edit.h"
#include "vpc_format.h"
#include "vpc_read.h"
#include "vpc_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("vpc", instar::vpc::probe, instar::vpc::info, nullptr, instar::vpc::create,
                               instar::vpc::open, instar::vpc::create_writer, instar::vpc::open_writer, nullptr,
                               instar::vpc::edit)
