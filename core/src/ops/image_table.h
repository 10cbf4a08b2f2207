// The images a guest operation reads (convert, map, compare, measure): every opened chain link as an
// entry of an instar_convert_image table, the devices and guest modules those entries name, and the
// sealed in-memory file that carries an operation's plan (header + table) into the guest.
#pragma once

#include "ops/info_op.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <instar/guest_abi.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace instar {

class ImageTable {
public:
    // Devices [0, reserved_devices) are the operation's own (e.g. the plan); images' devices follow.
    explicit ImageTable(std::size_t reserved_devices = 1) : devices(reserved_devices) {}

    // One image (its own files attached after it), not linked to anything: its table index.
    Expected<std::uint32_t> add(const ChainLink& link);
    // The tops of `chains` first, in order (indices 0..chains.size()-1), then the rest of each chain,
    // each entry's `backing` naming the next link down.
    Expected<bool> add_chains(const std::vector<OpenedChain>& chains);
    // A whole chain from its link `first` down, linked; the index of that link.
    Expected<std::uint32_t> add_chain(const OpenedChain& chain, std::size_t first = 0);
    // A guest module's index (each module once).
    Expected<std::uint32_t> module(const LoadedPlugin& plugin);
    // The links' secrets as a sealed device (instar_secret_table), appended to `devices`: the
    // operation argument's secrets_device (its index + 1), or 0 when no image has a secret.
    // `target_secret`: convert's target's secret, entry image == images.size().
    Expected<std::uint32_t> attach_secrets(class PlanFile& file,
                                           const std::optional<std::string>& target_secret = std::nullopt);
    // The table's own bound (INSTAR_CONVERT_MAX_IMAGES) and the sandbox's (devices, modules).
    Expected<bool> check_limits(const std::string& what) const;

    std::vector<instar_convert_image> images;
    std::vector<const ChainLink*> links; // images[i] came from *links[i]
    std::vector<vmm::Device> devices;
    std::vector<std::string> modules;

private:
    std::map<std::string, std::uint32_t> module_index_;
};

class PlanFile;

// A secrets device (instar_secret_table): each (entry index, secret) pair whose secret is not
// nullptr, in the given order (ascending indices). nullopt when none is. `file` holds it.
Expected<std::optional<vmm::Device>> write_secrets(PlanFile& file,
                                                   const std::vector<std::pair<std::uint32_t, const std::string*>>& secrets);

// Appends a trivially-copyable ABI struct's bytes.
template <typename T>
void append_bytes(std::vector<std::uint8_t>& out, const T* data, std::size_t count) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(data);
    // SAFETY: callers pass ABI structs with fixed layouts (static_asserts in guest_abi.h).
    out.insert(out.end(), p, p + count * sizeof(T));
}

// A plan as a sealed, read-only in-memory file the guest reads as a device. Lives as long as the run.
class PlanFile {
public:
    PlanFile() = default;
    PlanFile(const PlanFile&) = delete;
    PlanFile& operator=(const PlanFile&) = delete;
    ~PlanFile();
    Expected<vmm::Device> write(const std::vector<std::uint8_t>& bytes);

private:
    int fd_ = -1;
};

} // namespace instar
