// Reading and checking the options of a new VHDX image, in qemu's order and words.
#include "vhdx_create_params.h"

#include "vhdx_create_text.h"
#include "vhdx_metadata.h"

namespace instar::vhdx {

using guest::Status;

namespace {

constexpr uint64_t MiB = 1u << 20;

// qemu's ROUND_UP in uint64_t: wraps to a small value near 2^64, as qemu's does.
uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) & ~(to - 1); }

} // namespace

uint32_t vhdx_auto_block_size(uint64_t size) {
    if (size > (32ull << 40))
        return 64 * MiB;
    if (size > (100ull << 30))
        return 32 * MiB;
    if (size > (1ull << 30))
        return 16 * MiB;
    return 8 * MiB;
}

Status vhdx_create_params(const guest::CreateRequest& req, guest::CreateTarget& target, VhdxCreateParams* out) {
    using guest::create_fail;
    // The QAPI visit (subformat) comes first; the host normally refuses a bad choice itself.
    const char* subformat = guest::create_option(req, "subformat");
    if (subformat != nullptr && !guest::create_str_equal(subformat, "dynamic") &&
        !guest::create_str_equal(subformat, "fixed"))
        return ReasonText{}
            .add("Parameter 'subformat' does not accept value '")
            .add(subformat)
            .add("'")
            .fail(target, Status::Invalid);
    out->fixed = subformat != nullptr && guest::create_str_equal(subformat, "fixed");
    out->zero_blocks = guest::create_option_bool(req, "block_state_zero", true);
    out->differencing = req.backing_file != nullptr;

    uint64_t log_size, block_size;
    const bool has_log_size = guest::create_option(req, "log_size") != nullptr;
    if (!guest::create_option_u64(req, "log_size", VHDX_CREATE_DEFAULT_LOG_SIZE, &log_size) ||
        !guest::create_option_u64(req, "block_size", 0, &block_size))
        return create_fail(target, Status::Invalid, "Parameter expects a size");

    // vhdx_co_create_opts rounds silently: the size to 512 bytes, the log and block sizes up to
    // 1 MiB, the block size down to 256 MiB at most; 0 (or a wrap to 0) means automatic.
    out->size = round_up(req.size, 512);
    if (has_log_size)
        log_size = round_up(log_size, MiB);
    block_size = round_up(block_size, MiB);
    if (block_size > VHDX_BLOCK_SIZE_MAX)
        block_size = VHDX_BLOCK_SIZE_MAX;

    if (out->size > VHDX_CREATE_MAX_SIZE)
        return create_fail(target, Status::Invalid, "Image size too large; max of 64TB");
    if (log_size > UINT32_MAX)
        return create_fail(target, Status::Invalid, "Log size must be smaller than 4 GB");
    if (log_size < MiB || log_size % MiB != 0)
        return create_fail(target, Status::Invalid, "Log size must be a multiple of 1 MB");
    if (block_size == 0)
        block_size = vhdx_auto_block_size(out->size);
    // After the rounding above only the power-of-two rule can still fail.
    if ((block_size & (block_size - 1)) != 0)
        return create_fail(target, Status::Invalid, "Block size must be a power of two");
    out->log_size = static_cast<uint32_t>(log_size);
    out->block_size = static_cast<uint32_t>(block_size);
    return Status::Ok;
}

} // namespace instar::vhdx
