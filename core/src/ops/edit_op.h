// In-place changes to an existing image (resize, snapshot, amend, bitmap, rebase's backing switch,
// commit's emptying): open the image as info does, reopen it for writing (the same file, checked),
// and run INSTAR_OP_EDIT with the format's guest module. The guest parses and plans everything; the
// host serves reads and writes and decodes what the command reports (docs/edit.md).
#pragma once

#include "ops/dirty_repair.h"

#include "ops/info_first.h"
#include "ops/info_op.h"
#include "plugins/registry.h"
#include "util/expected.h"
#include "vmm/sandbox.h"
#include "vmm/unique_fd.h"

#include <instar/guest/edit_api.h>
#include <instar/guest_abi.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace instar {

struct EditOpen {
    std::string filename;
    std::optional<std::string> format; // -f
    std::vector<std::string> allow_paths;
    bool unsafe_quirks = false;
    bool backing_chain = false; // open the whole chain (path policy), not just the image
    bool read_write = false;    // the command writes the image (InfoOptions::read_write)
    bool opens_without_key = false; // no key-secret names a key for the image (InfoOptions's)
    std::vector<BackingKey> backing_keys; // what the backing levels name for keys (InfoOptions's)
    const PrefetchedInfo* prefetched = nullptr; // the top image's first inspection, already run
    // With read_write: a qcow2 image with the dirty bit is repaired first, as qemu's read-write
    // open does (dirty_repair.h), check's stderr text handed here; the chain is then opened again.
    // Unset: a dirty image is opened as it is (the format's edit refuses it).
    DiagnosticsFn repair_dirty;
    std::optional<std::string> secret; // the image's, for that repair of an encrypted image
};

// Opens opts.filename as info does (the same detection, open errors and path policy).
Expected<bool> open_for_edit(const EditOpen& opts, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                             std::uint32_t qemu_version, OpenedChain& chain);

struct EditCall {
    const ChainLink* link = nullptr; // the image, as open_for_edit opened it
    std::string filename;            // the user's name for it, for messages
    guest::EditCommand command{};
    std::vector<std::uint8_t> args;  // the command's argument bytes (its edit_*.h)
    bool write = true;               // reopen the image and its files for writing
    int image_fd = -1;               // >= 0: the image is already open for writing (convert's new
                                     // target, an unnamed temporary): used as is, not reopened
    std::vector<vmm::Device> extra;  // further read-only files (the caller keeps them open)
    std::chrono::milliseconds timeout{0}; // 0: the sandbox's default
    vmm::OutputFiles* outputs = nullptr;  // where the guest's add_file goes (nullptr: refused)
    std::function<void(std::uint64_t, std::uint64_t)> progress;
    std::uint32_t flags = 0; // further INSTAR_EDIT_* flags (try_quick_edit's INFO_FIRST)
    // false: -t unsafe, the edit's flushes are not made (vmm::Device::flush_ignored), as qemu's.
    bool flush = true;
    // The command's secrets by guest::EDIT_SECRET_* index (nullopt: none): sent as a sealed secrets
    // device (INSTAR_EDIT_SECRETS) when any is set.
    std::vector<std::optional<std::string>> secrets;
};

struct EditReport {
    guest::Status status = guest::Status::Ok; // the module's verdict
    std::string out;    // stdout text (control bytes but newlines replaced)
    std::string err;    // stderr text; '\x01' at a line start stands for "PROGRAM: "
    std::string reason; // why the command was refused, when it was
    std::vector<std::pair<std::uint32_t, std::vector<std::uint8_t>>> data; // the command's own records
    bool started = false;           // INSTAR_EDIT_INFO_FIRST: the guest began the edit
    // INSTAR_EDIT_INFO_FIRST: the info token stream of each inspection it sent, the image's first
    // (with INSTAR_EDIT_INFO_CHAINS its backing files' after it; else the image's alone).
    std::vector<std::vector<std::uint8_t>> infos;
};

Expected<EditReport> run_edit(const EditCall& call, const vmm::SandboxConfig& sandbox, std::uint32_t qemu_version);

// One sandbox start instead of two for a command that opens the image (as info does) and then edits
// it: the guest inspects the image and, when it stands alone (no backing, data or extent file, not
// encrypted) and the format the host probe chose is the one `accept` takes, edits it in the same run
// (INSTAR_EDIT_INFO_FIRST). True: the edit ran; `chain` holds the image as open_for_edit would have
// opened it (from the info the guest sent first) and `report` the edit's outcome. False: nothing was
// written; the caller takes its ordinary path (open_for_edit, its checks, run_edit), which gives
// every message. Errors: the run failed after it may have begun writing.
struct QuickEdit {
    EditOpen open;
    std::string filename; // the user's name, for messages
    guest::EditCommand command{};
    std::vector<std::uint8_t> args;
    std::function<bool(const LoadedPlugin&)> accept;
    vmm::OutputFiles* outputs = nullptr; // where the guest's add_file goes (nullptr: refused)
    std::optional<PrefetchedInfo>* prefetched = nullptr; // set when the guest inspected but did not edit
    bool flush = true; // EditCall::flush
};
Expected<bool> try_quick_edit(const QuickEdit& quick, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                              std::uint32_t qemu_version, OpenedChain& chain, EditReport& report);

// The file info inspected, opened again for writing: the same device, inode and size, else an error
// in qemu's "Could not open" words naming `filename` (the edit path, rebase).
Expected<vmm::UniqueFd> reopen_writable(const OpenedFile& f, const std::string& filename);

// Decodes INSTAR_REC_EDIT records (exposed for tests).
Expected<EditReport> decode_edit_records(std::span<const vmm::Record> records);

// Appends untrusted guest text for a terminal: no control bytes but newlines, and the program-name
// marker ('\x01') kept only at the start of a line (check and edit share it).
void append_guest_text(std::string& out, const std::uint8_t* data, std::size_t len);

} // namespace instar
