// qemu-img's progress display (util/qemu-progress.c), exactly: "    (%3.2f/100%)\r" on stdout each
// time the figure moves by more than one point, or reaches 0 or 100, and a newline at the end; plus
// instar's --progress=json: one JSON object per line on stderr, for pipelines.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace instar {

class Progress {
public:
    enum class Mode { Off, Human, Json };
    // `phase` names the work in JSON lines ("convert").
    Progress(Mode mode, std::ostream& out, std::ostream& err, std::string phase);

    // qemu_progress_print(delta, max): with max == 0, `delta` is the new figure; otherwise the figure
    // grows by delta/100*max. float arithmetic, as qemu's.
    void print(float delta, int max);
    // Work done of total, in bytes: the figure 100 * done / total, as qemu-img convert computes it
    // (its ratio of sectors is the same ratio).
    void work(std::uint64_t done, std::uint64_t total);
    // qemu_progress_end: the newline after the last figure (human mode).
    void end();
    // qemu_progress_init's min_skip: 1.0 for convert (the default), 2.0 for compare.
    void set_min_skip(float skip) { min_skip_ = skip; }

private:
    void emit();

    Mode mode_;
    std::ostream& out_;
    std::ostream& err_;
    std::string phase_;
    float current_ = 0;
    float last_print_ = 0;
    std::uint64_t done_ = 0, total_ = 0;
    float min_skip_ = 1.0f; // qemu-img convert's qemu_progress_init(progress, 1.0)
};

} // namespace instar
