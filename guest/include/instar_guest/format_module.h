// The glue that turns a format's guest-half functions into a guest module: one macro use per
// module, so every format binds the module ABI the same way.
//
//   INSTAR_FORMAT_MODULE("qcow2", instar::qcow2::probe, instar::qcow2::info, nullptr, instar::qcow2::create,
//                        instar::qcow2::open, instar::qcow2::create_writer)
#pragma once

#include <instar_guest/module_abi.h>

#define INSTAR_FORMAT_MODULE(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER)                         \
    INSTAR_FORMAT_MODULE_W(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, nullptr)

// The same, for a format that can also write into an existing image (convert -n: OPEN_WRITER).
#define INSTAR_FORMAT_MODULE_W(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER)          \
    INSTAR_FORMAT_MODULE_WITH_CHECK(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER,    \
                                    nullptr)

// The same, for a format with a consistency check as well (ModuleOps::check, module ABI 5).
#define INSTAR_FORMAT_MODULE_WITH_CHECK(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER,  \
                                        CHECK)                                                                     \
    INSTAR_FORMAT_MODULE_WITH_EDIT(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER,     \
                                   CHECK, nullptr)

// The same, for a format that changes existing images in place as well (ModuleOps::edit, ABI 6).
#define INSTAR_FORMAT_MODULE_WITH_EDIT(NAME, PROBE, INFO, DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER,   \
                                       CHECK, EDIT)                                                                \
    namespace {                                                                                                    \
    constinit const ::instar::guest::ModuleOps instar_format_module_ops = {                                        \
        ::instar::guest::MODULE_ABI_VERSION, sizeof(::instar::guest::ModuleOps), NAME, PROBE, nullptr, INFO,       \
        DETECT_OTHER, CREATE, OPEN, CREATE_WRITER, OPEN_WRITER, CHECK, EDIT};                                      \
    }                                                                                                              \
    extern "C" const ::instar::guest::ModuleOps* instar_module_entry(const ::instar::guest::Services* s) {         \
        if (s == nullptr || s->abi_version != ::instar::guest::MODULE_ABI_VERSION)                                 \
            return nullptr;                                                                                        \
        return &instar_format_module_ops;                                                                          \
    }
