#include "common/smtp/line_reader.hpp"

#include <algorithm>

namespace pbx::smtp {

LineResult LineReader::next(std::string_view buffer, size_t limit) {
    if (buffer.empty()) return {};
    if (discarding_) {
        for (size_t i = 0; i < buffer.size(); ++i) {
            char c = buffer[i];
            if (c == '\n') {
                if (prev_cr_) {
                    discarding_ = false;
                    prev_cr_ = false;
                    return {LineStatus::Discarded, {}, i + 1};
                }
                return {LineStatus::BareLf, {}, i + 1};
            }
            prev_cr_ = (c == '\r');
        }
        return {LineStatus::Discarded, {}, buffer.size()};
    }

    // A legal line has its LF within the first `limit` bytes; looking no
    // further makes the result independent of how the input was split.
    std::string_view window = buffer.substr(0, std::min(buffer.size(), limit));
    size_t lf = window.find('\n');
    if (lf == std::string_view::npos) {
        if (buffer.size() < limit) return {};
        discarding_ = true;
        prev_cr_ = buffer[limit - 1] == '\r';
        return {LineStatus::TooLong, {}, limit};
    }
    if (lf == 0 || buffer[lf - 1] != '\r') {
        discarding_ = true;
        prev_cr_ = false;
        return {LineStatus::BareLf, {}, lf + 1};
    }
    std::string_view line = buffer.substr(0, lf - 1);
    if (line.find('\r') != std::string_view::npos) return {LineStatus::BareCr, {}, lf + 1};
    return {LineStatus::Line, line, lf + 1};
}

}  // namespace pbx::smtp
