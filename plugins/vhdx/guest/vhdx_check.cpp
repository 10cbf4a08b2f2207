// vhdx's check: see vhdx_check.h.
#include "vhdx_check.h"

namespace instar::vhdx {

guest::Status check(const guest::CheckRequest& req, guest::CheckSink&, guest::CheckResult* result) {
    if (!req.image || !result)
        return guest::Status::Invalid;
    *result = guest::CheckResult{};
    return guest::Status::Ok; // with -r too: nothing to repair in an image that opened (see the header)
}

} // namespace instar::vhdx
