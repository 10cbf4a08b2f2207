// The texts of --version and --help.
#include "cli/help.h"

#include "cli/commands.h"
#include "instar_config.h"

#include <ostream>

namespace instar::cli {

void print_version(Context& ctx) {
    // Invoked as qemu-img (a symlink), answer like qemu-img so version-sniffing scripts work.
    if (ctx.prog == "qemu-img")
        ctx.out << "qemu-img version " << ctx.profile.text << " (instar " INSTAR_VERSION ")\n";
    else
        ctx.out << ctx.prog << " version " INSTAR_VERSION " (qemu-img " << ctx.profile.text << " compatible)\n";
    ctx.out << "Copyright (c) 2026 the instar developers\n";
}

void print_global_help(Context& ctx) {
    print_version(ctx);
    ctx.out << "instar: a sandboxed qemu-img. Every byte of an image is parsed inside a KVM micro-VM.  Usage:\n"
               "\n"
               "  "
            << ctx.prog
            << " [standard options] COMMAND [--help | command options]\n"
               "\n"
               "Standard options:\n"
               "  -h, --help\n"
               "     display this help and exit\n"
               "  -V, --version\n"
               "     display version info and exit\n"
               "  --qemu-version X.Y[.Z]\n"
               "     reproduce the output of this qemu-img version (7.2, or 8.0 and later;\n"
               "     default: INSTAR_QEMU_VERSION, else "
            << NEWEST_QEMU_PROFILE
            << ")\n"
               "  --max-guest-memory SIZE\n"
               "     cap on the sandbox VM's memory (default 256M)\n"
               "  --sandbox auto|kvm|process\n"
               "     where guest code runs: a KVM micro-VM, or a confined process where\n"
               "     /dev/kvm is unusable (default: INSTAR_SANDBOX, else auto)\n"
               "\n"
               "Recognized commands (run "
            << ctx.prog << " COMMAND --help for command-specific help):\n\n";
    for (const auto& c : commands())
        ctx.out << "  " << c.name << " - " << c.summary << (c.run ? "" : " (not implemented yet)") << '\n';
    ctx.out << "\nSupported image formats: run '" << ctx.prog << " formats'.\n";
}

void print_command_help(Context& ctx, std::string_view text) {
    if (ctx.profile.getopt_messages())
        ctx.out << text;
    else
        print_global_help(ctx);
}

} // namespace instar::cli
