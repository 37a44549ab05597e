// The Received: trace header (RFC 5321 4.4) that the queue puts on top of a
// message accepted over SMTP. The engine itself never adds it (it passes the
// message through unchanged); the glue or the queue-manager calls this pure
// function with the envelope and the queue ID.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace pbx::smtp {

struct ReceivedInfo {
    std::string_view helo;         // the client's EHLO/HELO argument (untrusted)
    std::string_view client_host;  // reverse DNS name; empty: "unknown"
    std::string_view client_ip;
    std::string_view by_host;   // our host name
    std::string_view protocol;  // "ESMTPSA" etc., see protocol_name()
    std::string_view
        tls_details;  // e.g. "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
    std::string_view queue_id;
    // The SMTP AUTH user, shown as "(Authenticated sender: NAME)" when not
    // empty (submitd sends it only with submission_received_auth = yes).
    std::string_view auth_user;
    std::string_view recipient;  // only when the message has exactly one recipient
    std::time_t when = 0;
    int utc_offset_minutes = 0;  // the glue knows the zone; this function stays pure
};

// "Received: from ...\r\n\t...;\r\n\t<date>\r\n": folded, CRLF line ends,
// ready to be written before the message. Every client-supplied value is
// reduced to a safe character set (controls and, inside comments, "()\\"
// become '?'), so no value can end the header or open a new one.
std::string received_header(const ReceivedInfo& info);

// RFC 5322 3.3 date-time, e.g. "Tue, 7 Feb 2023 09:05:01 +0100".
std::string rfc5322_date(std::time_t when, int utc_offset_minutes);

// The WITH protocol keyword: RFC 3848 (ESMTP, ESMTPA, ESMTPS, ESMTPSA) and
// RFC 6531 (UTF8SMTP, UTF8SMTPA, UTF8SMTPS, UTF8SMTPSA); HELO gives "SMTP".
std::string_view protocol_name(bool esmtp, bool smtputf8, bool tls, bool authenticated);

}  // namespace pbx::smtp
