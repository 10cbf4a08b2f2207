// The vhdx format's guest module: binds vhdx_format's probe and info, and vhdx_create's create.
#include "vhdx_create.h"
#include "vhdx_format.h"
#include "vhdx_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("vhdx", instar::vhdx::probe, instar::vhdx::info, nullptr, instar::vhdx::create, nullptr, instar::vhdx::create_writer)
