//! Values of the list headers (RFC 2919, RFC 2369), built the same way for every
//! message about a list.

use super::ListAddress;

/// Longest List-Id value allowed by RFC 2919 §3.
const MAX_LIST_ID_HEADER: usize = 255;

/// `"Dev" <dev.lists.example.org>`: the phrase is quoted and escaped, and dropped
/// (then cut) when the whole would exceed 255 octets.
pub fn list_id_header(name: &str, address: &ListAddress) -> String {
    let id = address.list_id();
    let phrase: String = name
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| {
            if c == '"' || c == '\\' {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect();
    let full = format!("\"{phrase}\" <{id}>");
    if phrase.is_empty() {
        return format!("<{id}>");
    }
    if full.len() <= MAX_LIST_ID_HEADER {
        return full;
    }
    let room = MAX_LIST_ID_HEADER.saturating_sub(id.len() + 5);
    let mut cut = String::new();
    for c in phrase.chars() {
        if cut.len() + c.len_utf8() > room {
            break;
        }
        cut.push(c);
    }
    let cut = cut.trim_end_matches('\\');
    if cut.is_empty() {
        format!("<{id}>")
    } else {
        format!("\"{cut}\" <{id}>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_id_quotes_the_name_and_fits_in_255_octets() {
        let a = ListAddress::parse("dev@lists.example.org").unwrap();
        assert_eq!(list_id_header("Dev", &a), "\"Dev\" <dev.lists.example.org>");
        assert_eq!(
            list_id_header("Say \"hi\"", &a),
            "\"Say \\\"hi\\\"\" <dev.lists.example.org>"
        );
        let long = list_id_header(&"ü".repeat(300), &a);
        assert!(
            long.len() <= 255 && long.ends_with("<dev.lists.example.org>"),
            "{long}"
        );
        assert!(!list_id_header("a\r\nb", &a).contains('\n'));
    }
}
