// The plugin SDK's target measurement (ABI 6): how `instar measure -O FMT` asks the target format's
// plugin for qemu-img's `required` / `fully-allocated` / `bitmaps` figures.
//
// A format that qemu-img can measure (its block driver has bdrv_measure) points
// FormatDescriptor::measure at a MeasureHooks; a format without one "does not support size
// measurement", as qemu-img says. The hooks run in the host process, on trusted inputs only: the
// user's -o items and sizes, the ids of the secrets given with --object (never their values), and
// what the sandbox reported about the source (its virtual size, its persistent bitmaps, and the
// allocation walk's count). They do arithmetic; they never open a file.
//
// instar runs them in this order (core/src/cli/cmd_measure.cpp):
//   1. plan(): check the options as the format's measure does (qemu's messages) and say in which
//      unit the source's allocation walk counts data (0: the figures do not depend on the data).
//   2. the walk, in the sandbox, when there is a source and a unit.
//   3. figures(): the answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace instar {

// One -o item, in command-line order (the last setting of a key wins, as qemu_opt_get finds it).
// Values of Size-typed options arrive in decimal bytes ("64k" -> "65536"); others as given.
struct MeasureOption {
    const char* key;
    const char* value;
};

// A persistent dirty bitmap of the source.
struct MeasureBitmap {
    const char* name;
    std::uint64_t granularity;
};

enum MeasureRequestFlag : std::uint32_t {
    // A FILENAME was measured: virtual_size is the source's.
    MEASURE_HAVE_SOURCE = 1u << 0,
    // plan() is asked before the source is open, so that inspecting and walking it can share one
    // sandbox start: virtual_size is 0 and unknown. A plan whose walk unit depends on the virtual
    // size answers walk_unit 0 here (it is asked again once the size is known).
    MEASURE_SIZE_UNKNOWN = 1u << 1,
    // The source can carry persistent bitmaps (bdrv_supports_persistent_dirty_bitmap in the
    // profile's qemu): `bitmaps` lists those it has (possibly none).
    MEASURE_SOURCE_BITMAPS = 1u << 2,
    // `instar measure --estimate` was given (MEASURE_HOOKS_EXTENSION hooks run only then).
    MEASURE_ESTIMATE = 1u << 3,
};

struct MeasureRequest {
    const MeasureOption* options;
    std::uint32_t option_count;
    std::uint32_t flags;        // MeasureRequestFlag
    std::uint64_t size_option;  // --size, else -o size, in bytes; 0 when neither was given
    std::uint64_t virtual_size; // the source's with MEASURE_HAVE_SOURCE, else size_option
    std::uint32_t qemu_version; // the profile (qemu_version(major, minor, micro))
    std::uint32_t secret_count;
    const char* const* secret_ids; // ids of --object secret,id=ID (qemu creates them before measuring)
    const MeasureBitmap* bitmaps;  // with MEASURE_SOURCE_BITMAPS
    std::uint32_t bitmap_count;
};

enum MeasurePlanFlag : std::uint32_t {
    // qemu's walk asks the source's block status: a source whose format has none in qemu
    // (QEMU_NO_BLOCK_STATUS) is data everywhere, and instar counts it so without a walk.
    // Without this flag the walk counts what the source really allocates (instar's own writers).
    MEASURE_QEMU_BLOCK_STATUS = 1u << 0,
};

struct MeasurePlan {
    std::uint64_t walk_unit = 0; // bytes (a power of two, at most 2^31); 0: no walk
    std::uint32_t flags = 0;     // MeasurePlanFlag
};

struct MeasureAnswer {
    std::uint64_t required = 0;
    std::uint64_t fully_allocated = 0;
    std::uint64_t bitmaps = 0;
    std::uint32_t has_bitmaps = 0; // nonzero: "bitmaps size" is printed
};

enum MeasureHooksFlag : std::uint32_t {
    // qemu-img cannot measure this format: the figures are instar's (an upper bound of what instar
    // writes, listed as a divergence) and given only with `measure --estimate`.
    MEASURE_HOOKS_EXTENSION = 1u << 0,
};
inline constexpr std::uint32_t MEASURE_HOOKS_FLAGS_ALL = MEASURE_HOOKS_EXTENSION;

// Room for a hook's error message (qemu's text, printed after "qemu-img: ").
inline constexpr std::size_t MEASURE_ERROR_MAX = 512;

struct MeasureHooks {
    std::uint32_t flags; // MeasureHooksFlag
    // false: `error` holds the message. Must not throw.
    bool (*plan)(const MeasureRequest& request, MeasurePlan& plan, char* error) noexcept;
    // `data`: the walk's count (bytes in walk_unit clusters that hold data), or 0 when no walk ran.
    bool (*figures)(const MeasureRequest& request, std::uint64_t data, MeasureAnswer& answer, char* error) noexcept;
};

// Helpers for hooks.

// The last value given for `key`, or nullptr.
inline const char* measure_option(const MeasureRequest& r, std::string_view key) {
    const char* v = nullptr;
    for (std::uint32_t i = 0; i < r.option_count; ++i)
        if (key == r.options[i].key)
            v = r.options[i].value;
    return v;
}

inline constexpr std::uint64_t measure_div_round_up(std::uint64_t a, std::uint64_t b) {
    return a / b + (a % b != 0 ? 1 : 0);
}
inline constexpr std::uint64_t measure_round_up(std::uint64_t a, std::uint64_t b) {
    return measure_div_round_up(a, b) * b;
}

// A number-valued option read as qemu's parse_option_number does (base 0: "0x10", "010"; Size-typed
// options arrive in decimal bytes), or `fallback` when the key was not given.
inline std::uint64_t measure_number(const MeasureRequest& r, std::string_view key, std::uint64_t fallback) {
    const char* v = measure_option(r, key);
    return v ? std::strtoull(v, nullptr, 0) : fallback;
}

// Copies `text` (truncated to fit) into a hook's error buffer; returns false for `return`.
inline bool measure_fail(char* error, std::string_view text) {
    const std::size_t n = text.size() < MEASURE_ERROR_MAX - 1 ? text.size() : MEASURE_ERROR_MAX - 1;
    std::memcpy(error, text.data(), n);
    error[n] = '\0';
    return false;
}

} // namespace instar
