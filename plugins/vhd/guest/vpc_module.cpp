// The vpc format's guest module: binds vpc_format's probe and info and vpc_create's create.
#include "vpc_create.h"
#include "vpc_format.h"
#include "vpc_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("vpc", instar::vpc::probe, instar::vpc::info, nullptr, instar::vpc::create, nullptr, instar::vpc::create_writer)
