// vhdx's check: see vhdx_check.h.
#include "vhdx_check.h"

namespace instar::vhdx {

guest::Status check(const guest::CheckRequest& req, guest::CheckSink&, guest::CheckResult* result) {
    if (!req.image || !result)
        return guest::Status::Invalid;
    *result = guest::CheckResult{};
    if (req.fix)
        return guest::Status::Unsupported;
    return guest::Status::Ok;
}

} // namespace instar::vhdx
