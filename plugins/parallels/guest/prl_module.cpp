// The parallels format's guest module: binds probe, info, create, the reader, the writers and check.
#include "prl_check.h"
#include "prl_create.h"
#include "prl_format.h"
#include "prl_read.h"
#include "prl_write.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_CHECK("parallels", instar::parallels::probe, instar::parallels::info, nullptr,
                     instar::parallels::create, instar::parallels::open, instar::parallels::create_writer,
                     instar::parallels::open_writer, instar::parallels::check)
