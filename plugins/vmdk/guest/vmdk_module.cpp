// The vmdk format's guest module: binds vmdk_format's probe and info.
#include "vmdk_format.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE("vmdk", instar::vmdk::probe, instar::vmdk::info, nullptr, nullptr)
