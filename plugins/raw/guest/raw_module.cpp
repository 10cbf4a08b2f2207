// The raw format's guest module: binds raw_format's probe, info and detection of unsupported formats.
#include "raw_edit.h"
#include "raw_format.h"
#include "raw_io.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("raw", instar::raw::probe, instar::raw::info, instar::raw::detect_other, nullptr,
                               instar::raw::open, instar::raw::create_writer, instar::raw::open_writer, nullptr,
                               instar::raw::edit)
