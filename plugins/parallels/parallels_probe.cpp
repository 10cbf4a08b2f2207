// Parallels probe rules: either magic at offset 0 and version 2 (little-endian) at offset 16
// (qemu's parallels_probe), and the plugin's divergences.
#include "parallels_plugin.h"

namespace instar::parallels {
namespace {

constexpr unsigned char MAGIC[] = {'W', 'i', 't', 'h', 'o', 'u', 't', 'F', 'r', 'e', 'e', 'S', 'p', 'a', 'c', 'e'};
constexpr unsigned char MAGIC2[] = {'W', 'i', 't', 'h', 'o', 'u', 'F', 'r', 'e', 'S', 'p', 'a', 'c', 'E', 'x', 't'};
constexpr unsigned char VERSION[] = {2, 0, 0, 0};
constexpr ProbeMatch OLD[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
                              {ProbeMatch::FromStart, 16, VERSION, sizeof VERSION}};
constexpr ProbeMatch EXT[] = {{ProbeMatch::FromStart, 0, MAGIC2, sizeof MAGIC2},
                              {ProbeMatch::FromStart, 16, VERSION, sizeof VERSION}};

} // namespace

const ProbeRule PROBE_RULES[] = {{OLD, 2}, {EXT, 2}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"parallels-format-extension", "check",
     "an image with a format extension (ext_off != 0: dirty bitmaps behind an MD5 checksum) is read as qemu reads "
     "it but refused for writing (check -r, convert -n), the file untouched; an ext_off of 2^54 or more is refused "
     "under 7.2 with 10.0's 'Invalid image: Too big offset'",
     "qemu ignores the extension on a read-write open and writes over it, leaving an image neither qemu-img can "
     "open; 7.2 aborts on the large ext_off"},
    {"parallels-ext-limits", "info",
     "a bitmap granularity qemu asserts on is refused ('Invalid bitmap granularity N, ...'); a feature list that "
     "runs past the extension cluster (qemu counts only the headers off what remains) reads zeros there; more than "
     "1024 bitmaps (PRL_EXT_MAX_BITMAPS) are refused",
     "qemu 7.2 and 10.0 abort, or read past their buffer; the bitmap ids are kept to find duplicates"},
    {"parallels-check-repairs", "check",
     "after check -r under 7.2, a file whose BAT named clusters outside it, or an old-magic image with data_off "
     "0, keeps the length the repair left; qemu-img's close then grows it to data_end (zeros past the image end "
     "offset, which qemu's next check reports as leaked)",
     "qemu-img grows the file only after its double check, which instar runs as a second read-only pass: "
     "growing it first would make that pass report the zeros as leaked space"},
    {"parallels-check-e2big", "check",
     "qemu-img 10.0 check aborts (assertion in parallels_check_duplicate, exit 134) on a BAT entry outside the "
     "image; instar skips that entry in the duplicate pass and finishes the check",
     "an assertion failure is not behaviour worth reproducing"},
    {"parallels-check-outside-lines", "check",
     "for a file shorter than one cluster whose BAT reaches past its end, qemu-img 10.0 prints a 'cluster N is "
     "outside image' line per BAT entry (up to 2^29); instar prints them up to the check text cap and counts the rest",
     "a 15 KB file must not cost gigabytes of output and minutes of work"},
    {"parallels-convert-n", "convert",
     "convert -n into a parallels image qemu's open finds damaged (not closed correctly; under 10.0 also a bad "
     "data_off, data past the end of the file or duplicate clusters) is refused (unclean) or written without "
     "the repair qemu-img 10.0 runs on open",
     "a write must not silently run check -r; repair the image with instar check -r first"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::parallels
