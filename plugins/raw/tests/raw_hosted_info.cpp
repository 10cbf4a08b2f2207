// Hosted tool for the raw guest half: `raw_hosted_info FILE` prints the decoded report;
// `raw_hosted_info --detect FILE` prints {"other": NAME or null} from detect_other.
#include "hosted_support.h"
#include "raw_format.h"

#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "--detect") == 0) {
        instar::hosted::FileDevice dev(argv[2]);
        if (!dev.ok())
            return 2;
        const char* name = nullptr;
        const auto st = instar::raw::detect_other(dev, &name);
        std::cout << "{\"status\": " << static_cast<int>(st) << ", \"other\": "
                  << (name ? std::string("\"") + name + "\"" : std::string("null")) << "}\n";
        return 0;
    }
    return instar::hosted::hosted_info_main(argc, argv, &instar::raw::probe, &instar::raw::info);
}
