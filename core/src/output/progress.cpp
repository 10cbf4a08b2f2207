// qemu-img's progress display (progress.h).
#include "output/progress.h"

#include <cstdio>
#include <ostream>

namespace instar {

Progress::Progress(Mode mode, std::ostream& out, std::ostream& err, std::string phase)
    : mode_(mode), out_(out), err_(err), phase_(std::move(phase)) {}

void Progress::print(float delta, int max) {
    float current = max == 0 ? delta : current_ + delta / 100 * static_cast<float>(max);
    if (current > 100)
        current = 100;
    current_ = current;
    if (current > last_print_ + min_skip_ || current < last_print_ - min_skip_ || current == 100 || current == 0) {
        last_print_ = current_;
        emit();
    }
}

void Progress::work(std::uint64_t done, std::uint64_t total) {
    done_ = done;
    total_ = total;
    // qemu-img: qemu_progress_print(100.0 * allocated_done / allocated_sectors, 0) -- a double
    // narrowed to float by the call.
    print(static_cast<float>(100.0 * static_cast<double>(done) / static_cast<double>(total)), 0);
}

void Progress::emit() {
    if (mode_ == Mode::Human) {
        char text[48];
        std::snprintf(text, sizeof text, "    (%3.2f/100%%)\r", static_cast<double>(current_));
        out_ << text;
        out_.flush();
    } else if (mode_ == Mode::Json) {
        char text[160];
        std::snprintf(text, sizeof text, "{\"phase\": \"%s\", \"percent\": %.2f, \"done\": %llu, \"total\": %llu}\n",
                      phase_.c_str(), static_cast<double>(current_), static_cast<unsigned long long>(done_),
                      static_cast<unsigned long long>(total_));
        err_ << text;
        err_.flush();
    }
}

void Progress::end() {
    if (mode_ == Mode::Human) {
        out_ << '\n';
        out_.flush();
    }
}

} // namespace instar
