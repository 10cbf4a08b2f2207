// The vmdk format's guest module: binds vmdk_format's probe and info, vmdk_create's create and
// vmdk_read's open.
#include "vmdk_create.h"
#include "vmdk_format.h"
#include "vmdk_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("vmdk", instar::vmdk::probe, instar::vmdk::info, nullptr, instar::vmdk::create, instar::vmdk::open,
                     nullptr)
