// The image table shared by the data operations' plans.
#include "ops/image_table.h"

#include "ops/guest_module.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace instar {

Expected<std::uint32_t> ImageTable::module(const LoadedPlugin& plugin) {
    auto path = guest_module_path(plugin);
    if (!path)
        return Error{path.error()};
    auto [it, fresh] = module_index_.try_emplace(*path, static_cast<std::uint32_t>(modules.size()));
    if (fresh)
        modules.push_back(*path);
    return it->second;
}

Expected<std::uint32_t> ImageTable::add(const ChainLink& link) {
    auto mod = module(*link.plugin);
    if (!mod)
        return Error{mod.error()};
    instar_convert_image im{};
    im.module = *mod;
    im.device = static_cast<std::uint32_t>(devices.size());
    devices.push_back({link.image.fd, link.image.size, false});
    im.first_file = static_cast<std::uint32_t>(devices.size());
    im.file_count = static_cast<std::uint32_t>(link.files.size());
    for (const auto& f : link.files)
        devices.push_back({f.fd, f.size, false});
    im.backing = INSTAR_CONVERT_NO_BACKING;
    im.cluster_size =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(link.node.cluster_size.value_or(0), UINT32_MAX));
    images.push_back(im);
    links.push_back(&link);
    return static_cast<std::uint32_t>(images.size() - 1);
}

Expected<bool> ImageTable::add_chains(const std::vector<OpenedChain>& chains) {
    std::vector<std::uint32_t> tops;
    for (const auto& chain : chains) {
        auto idx = add(chain.links.front());
        if (!idx)
            return Error{idx.error()};
        tops.push_back(*idx);
    }
    for (std::size_t s = 0; s < chains.size(); ++s) {
        std::uint32_t above = tops[s];
        for (std::size_t k = 1; k < chains[s].links.size(); ++k) {
            auto idx = add(chains[s].links[k]);
            if (!idx)
                return Error{idx.error()};
            images[above].backing = *idx;
            above = *idx;
        }
    }
    return true;
}

Expected<std::uint32_t> ImageTable::add_chain(const OpenedChain& chain, std::size_t first) {
    std::uint32_t top = INSTAR_CONVERT_NO_BACKING;
    std::uint32_t above = INSTAR_CONVERT_NO_BACKING;
    for (std::size_t k = first; k < chain.links.size(); ++k) {
        auto idx = add(chain.links[k]);
        if (!idx)
            return Error{idx.error()};
        if (above == INSTAR_CONVERT_NO_BACKING)
            top = *idx;
        else
            images[above].backing = *idx;
        above = *idx;
    }
    return top;
}

Expected<bool> ImageTable::check_limits(const std::string& what) const {
    if (images.size() > INSTAR_CONVERT_MAX_IMAGES)
        return Error{"too many images to " + what + " at once (" + std::to_string(images.size()) + "; at most " +
                     std::to_string(INSTAR_CONVERT_MAX_IMAGES) + ")"};
    if (modules.size() > INSTAR_MAX_MODULES)
        return Error{"too many different formats in one " + what + " (" + std::to_string(modules.size()) + ")"};
    if (devices.size() > INSTAR_MAX_DEVICES)
        return Error{"too many files for one sandbox (" + std::to_string(devices.size()) + "; at most " +
                     std::to_string(INSTAR_MAX_DEVICES) + ")"};
    return true;
}

Expected<std::optional<vmm::Device>> write_secrets(PlanFile& file,
                                                   const std::vector<std::pair<std::uint32_t, const std::string*>>& secrets) {
    std::vector<instar_secret_entry> entries;
    std::vector<std::uint8_t> data;
    for (const auto& [index, secret] : secrets) {
        if (secret == nullptr)
            continue;
        if (secret->size() > INSTAR_MAX_SECRET_BYTES)
            return Error{"a secret is larger than instar accepts (" + std::to_string(INSTAR_MAX_SECRET_BYTES) +
                         " bytes)"};
        entries.push_back({index, static_cast<std::uint32_t>(secret->size())});
        data.insert(data.end(), secret->begin(), secret->end());
    }
    if (entries.empty())
        return std::optional<vmm::Device>{};
    const instar_secret_table head{INSTAR_SECRETS_MAGIC, static_cast<std::uint32_t>(entries.size())};
    std::vector<std::uint8_t> bytes;
    append_bytes(bytes, &head, 1);
    append_bytes(bytes, entries.data(), entries.size());
    bytes.insert(bytes.end(), data.begin(), data.end());
    auto dev = file.write(bytes);
    std::fill(bytes.begin(), bytes.end(), std::uint8_t{0});
    std::fill(data.begin(), data.end(), std::uint8_t{0});
    if (!dev)
        return Error{dev.error()};
    return std::optional<vmm::Device>{*dev};
}

Expected<std::uint32_t> ImageTable::attach_secrets(PlanFile& file, const std::optional<std::string>& target_secret) {
    std::vector<std::pair<std::uint32_t, const std::string*>> secrets;
    for (std::size_t i = 0; i <= links.size(); ++i) {
        const std::optional<std::string>* secret = nullptr;
        if (i < links.size() && links[i] != nullptr)
            secret = &links[i]->secret;
        else if (i == links.size())
            secret = &target_secret; // the target: the entry after the images
        if (secret != nullptr && *secret)
            secrets.emplace_back(static_cast<std::uint32_t>(i), &**secret);
    }
    auto dev = write_secrets(file, secrets);
    if (!dev)
        return Error{dev.error()};
    if (!*dev)
        return 0u;
    devices.push_back(**dev);
    return static_cast<std::uint32_t>(devices.size());
}

PlanFile::~PlanFile() {
    if (fd_ >= 0)
        ::close(fd_);
}

Expected<vmm::Device> PlanFile::write(const std::vector<std::uint8_t>& bytes) {
    fd_ = ::memfd_create("instar-plan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd_ < 0)
        return Error{std::string("cannot make the operation's plan: ") + std::strerror(errno)};
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return Error{std::string("cannot write the operation's plan: ") + std::strerror(errno)};
        done += static_cast<std::size_t>(n);
    }
    // Nothing, not even this process, changes the plan once the guest may read it.
    if (::fcntl(fd_, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        return Error{std::string("cannot seal the operation's plan: ") + std::strerror(errno)};
    return vmm::Device{fd_, bytes.size(), false};
}

} // namespace instar
