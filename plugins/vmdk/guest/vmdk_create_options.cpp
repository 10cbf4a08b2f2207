// qemu's vmdk create options: defaults, enum names and value checks, in qemu's order.
#include "vmdk_create_options.h"

#include "vmdk_create_text.h"

namespace instar::vmdk {

using guest::Status;
using guest::create_option;
using guest::create_str_equal;

namespace {

constexpr uint64_t SECTOR = 512;
constexpr const char* SUBFORMAT_NAMES[] = {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                                           "twoGbMaxExtentFlat", "streamOptimized"};
constexpr const char* ADAPTER_NAMES[] = {"ide", "buslogic", "lsilogic", "legacyESX"};

Status fail(CreateError* err, Status st, const char* text, const char* value = nullptr) {
    TextWriter w(err->text, guest::CREATE_MAX_REASON, nullptr, 0);
    w.put(text);
    if (value != nullptr)
        w.put(value);
    err->len = w.pending();
    err->text[err->len] = 0;
    return st;
}

} // namespace

const char* subformat_name(Subformat s) { return SUBFORMAT_NAMES[static_cast<int>(s)]; }
const char* adapter_name(AdapterType a) { return ADAPTER_NAMES[static_cast<int>(a)]; }

Status read_create_settings(const guest::CreateRequest& req, CreateSettings* out, CreateError* err) {
    err->len = 0;
    err->text[0] = 0;
    // vmdk_co_create_opts: the backing format first, before any other option is looked at.
    if (req.backing_fmt != nullptr && !create_str_equal(req.backing_fmt, "vmdk"))
        return fail(err, Status::Invalid, "backing_file must be a vmdk image");
    CreateSettings s{};
    // ROUND_UP(size, BDRV_SECTOR_SIZE) in uint64 (the host passes at most INT64_MAX).
    s.size = (req.size + (SECTOR - 1)) & ~(SECTOR - 1);
    s.backing_file = req.backing_file;
    const char* hw = create_option(req, "hwversion");
    if (hw != nullptr && create_str_equal(hw, "undefined"))
        hw = nullptr; // qemu's default value, meaning "not set"
    const char* tools = create_option(req, "toolsversion");
    const bool compat6 = guest::create_option_bool(req, "compat6", false);
    s.zeroed_grain = guest::create_option_bool(req, "zeroed_grain", false);

    const char* adapter = create_option(req, "adapter_type");
    s.adapter = AdapterType::Ide;
    if (adapter != nullptr) {
        bool found = false;
        for (int i = 0; i < 4 && !found; ++i)
            if (create_str_equal(adapter, ADAPTER_NAMES[i])) {
                s.adapter = static_cast<AdapterType>(i);
                found = true;
            }
        if (!found)
            return fail(err, Status::Invalid, "invalid parameter value: ", adapter);
    }
    const char* fmt = create_option(req, "subformat");
    s.subformat = Subformat::MonolithicSparse;
    if (fmt != nullptr) {
        bool found = false;
        for (int i = 0; i < 5 && !found; ++i)
            if (create_str_equal(fmt, SUBFORMAT_NAMES[i])) {
                s.subformat = static_cast<Subformat>(i);
                found = true;
            }
        if (!found)
            return fail(err, Status::Invalid, "invalid parameter value: ", fmt);
    }

    // vmdk_co_do_create.
    if (compat6) {
        if (hw != nullptr)
            return fail(err, Status::Invalid, "compat6 cannot be enabled with hwversion set");
        hw = "6";
    }
    s.hw_version = hw != nullptr ? hw : "4";
    s.tools_version = tools != nullptr ? tools : "2147483647";
    s.split = s.subformat == Subformat::TwoGbMaxExtentFlat || s.subformat == Subformat::TwoGbMaxExtentSparse;
    s.flat = s.subformat == Subformat::MonolithicFlat || s.subformat == Subformat::TwoGbMaxExtentFlat;
    s.compress = s.subformat == Subformat::StreamOptimized;
    if (s.flat && s.backing_file != nullptr)
        return fail(err, Status::Unsupported, "Flat image can't have backing file");
    if (s.flat && s.zeroed_grain)
        return fail(err, Status::Unsupported, "Flat image can't enable zeroed grain");
    // The file protocol creates the first file next, refusing metadata preallocation (the other
    // modes preallocate a zero-length file: nothing).
    const char* prealloc = create_option(req, "preallocation");
    if (prealloc != nullptr && create_str_equal(prealloc, "metadata"))
        return fail(err, Status::Unsupported, "Unsupported preallocation mode: metadata");
    *out = s;
    return Status::Ok;
}

} // namespace instar::vmdk
