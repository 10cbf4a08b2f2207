// The vmdk format's guest module: binds vmdk_format's probe and info and vmdk_create's create.
#include "vmdk_create.h"
#include "vmdk_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("vmdk", instar::vmdk::probe, instar::vmdk::info, nullptr, instar::vmdk::create, nullptr, nullptr)
