// Removal of an operation's named temporary files when SIGINT, SIGTERM or SIGHUP ends the process.
//
// A process-wide registry of temporary paths in a fixed array, and a handler that unlinks them with
// unlink(2) and re-raises the signal with its default action, so the process still ends as qemu-img
// does (killed by that signal; the shell sees 128 + N). The handler is installed when the first
// file is registered or the first section is entered, and only over a signal's default action: a
// signal the caller ignores (nohup, `&` in a non-interactive shell) stays ignored, as for qemu-img.
//
// A Section defers the three signals' cleanup: while one is open, a signal is only noted, and acted
// on (cleanup, then re-raise) when the section closes. AtomicFiles opens one around creating and
// registering a temporary (so no file exists unregistered) and around moving files into place (so
// a commit is never cut in half by a signal).
//
// The handler may run on any thread that does not block these signals; a thread that must not make
// the handler's system calls (a seccomp-confined vCPU thread: unlink, rt_sigaction, tgkill) calls
// block_cleanup_signals() first, so the signals go to another thread.
#pragma once

#include "instar/guest_abi.h"

#include <cstddef>

namespace instar::signal_cleanup {

// One AtomicFiles holds at most INSTAR_MAX_ADDED_FILES + 1 named temporaries (a vmdk's extents and
// its descriptor); room for two such operations at once in one process (a library caller).
inline constexpr std::size_t MAX_TEMP_PATHS = 2 * (INSTAR_MAX_ADDED_FILES + 1);

// Registers `path` (which must stay valid, unchanged, until unregister) for removal on a signal.
// Returns the slot, or -1 when all MAX_TEMP_PATHS slots are taken. Call inside a Section.
int register_path(const char* path);
// Forgets the slot (the file was removed or renamed into place). -1 is ignored.
void unregister(int slot);

// Defers the signals' cleanup for its lifetime (see above). One open at a time per process; a
// second thread waits. Not re-entrant on one thread.
class Section {
public:
    Section();
    ~Section();
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
};

// Blocks SIGINT, SIGTERM and SIGHUP on the calling thread (for threads that cannot clean up).
void block_cleanup_signals();

} // namespace instar::signal_cleanup
