// The convert engine's interface (a first, simple engine; replaced by the exact one).
#pragma once
#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>
namespace instar::convert {
struct Source { guest::ImageReader* const* chain; uint32_t depth; };
struct Params { uint64_t min_sparse = 4096; bool compressed = false; bool target_has_backing = false;
  bool target_is_zero = false; bool existing_target = false; bool out_of_order = false;
  void (*progress)(void* ctx, uint64_t done, uint64_t total) = nullptr; void* progress_ctx = nullptr; };
guest::Status run_convert(const Source* sources, uint32_t count, guest::ImageWriter& target, const Params& p,
                          guest::Allocator& alloc, guest::ReasonSink* reasons);
}
