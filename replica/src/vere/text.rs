//! A small noun notation for test vectors: `0`, `0x1f` (hex, any size),
//! `~` (0), `%ames` (a cord), `[a b c]` (`[a [b c]]`).

use super::noun::{Noun, Nouns};

/// Reads `text` as one noun; `None` if it is not exactly one.
pub fn parse(n: &mut Nouns, text: &str) -> Option<Noun> {
    let spaced = text.replace('[', " [ ").replace(']', " ] ");
    let mut stack: Vec<Vec<Noun>> = vec![vec![]];
    for token in spaced.split_whitespace() {
        match token {
            "[" => stack.push(vec![]),
            "]" => {
                let items = stack.pop()?;
                if items.len() < 2 {
                    return None;
                }
                let cell = n.tuple(&items)?;
                stack.last_mut()?.push(cell);
            }
            _ => {
                let atom = atom(n, token)?;
                stack.last_mut()?.push(atom);
            }
        }
    }
    match &stack[..] {
        [top] if top.len() == 1 => Some(top[0]),
        _ => None,
    }
}

fn atom(n: &mut Nouns, token: &str) -> Option<Noun> {
    if token == "~" {
        return Some(n.atom(&[]));
    }
    if let Some(cord) = token.strip_prefix('%') {
        return Some(n.cord(cord));
    }
    if let Some(hex) = token.strip_prefix("0x") {
        let digits: Vec<u8> = hex
            .chars()
            .rev()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<_>>()?;
        let bytes: Vec<u8> = digits
            .chunks(2)
            .map(|p| p[0] | p.get(1).map_or(0, |h| h << 4))
            .collect();
        return Some(n.atom(&bytes));
    }
    Some(n.atom_u64(token.parse().ok()?))
}
