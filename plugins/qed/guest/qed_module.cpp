// The qed format's guest module: probe/info (qed_format), create and convert's writer (qed_create,
// qed_write), the reader (qed_read), check (qed_check) and resize/rebase (qed_edit).
#include "qed_check.h"
#include "qed_create.h"
#include "qed_edit.h"
#include "qed_format.h"
#include "qed_read.h"

#include <instar_guest/format_module.h>

INSTAR_FORMAT_MODULE_WITH_EDIT("qed", instar::qed::probe, instar::qed::info, nullptr, instar::qed::create,
                               instar::qed::open, instar::qed::create_writer, instar::qed::open_writer, instar::qed::check,
                               instar::qed::edit)
