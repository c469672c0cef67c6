//! Mapping a data set's own label values to negative (0) / positive (1).

use std::fmt;
use std::str::FromStr;

/// `NEG/POS`, each side one or more values joined by `|`, compared case-insensitively after
/// trimming; numbers compare by value (`1.0` = `1`). Anything else is not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    negative: Vec<String>,
    positive: Vec<String>,
}

/// Canonical form of a label value: trimmed, lower-case, integral numbers without decimals.
pub fn normalize(value: &str) -> String {
    let v = value.trim();
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        _ => v.to_lowercase(),
    }
}

impl LabelMap {
    /// The class of a raw label value, or `None` when the map does not name it.
    pub fn class(&self, value: &str) -> Option<usize> {
        let v = normalize(value);
        if self.negative.contains(&v) {
            Some(0)
        } else if self.positive.contains(&v) {
            Some(1)
        } else {
            None
        }
    }

    /// The map for `pos/` and `neg/` folders.
    pub fn folders() -> Self {
        "neg/pos".parse().expect("valid")
    }
}

impl FromStr for LabelMap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (neg, pos) = s.split_once('/').ok_or_else(|| {
            format!(
                "label map `{s}` is not NEG/POS (e.g. 0/1, 0/4, negative/positive, rotten/fresh)"
            )
        })?;
        let side = |x: &str| -> Vec<String> {
            x.split('|')
                .map(normalize)
                .filter(|v| !v.is_empty())
                .collect()
        };
        let (negative, positive) = (side(neg), side(pos));
        if negative.is_empty() || positive.is_empty() {
            return Err(format!("label map `{s}` needs values on both sides of `/`"));
        }
        if let Some(both) = negative.iter().find(|v| positive.contains(v)) {
            return Err(format!(
                "label map `{s}` names `{both}` as both negative and positive"
            ));
        }
        Ok(Self { negative, positive })
    }
}

impl fmt::Display for LabelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.negative.join("|"), self.positive.join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_alternatives() {
        let m: LabelMap = "0/4".parse().unwrap();
        assert_eq!(m.class("0"), Some(0));
        assert_eq!(m.class(" 4.0 "), Some(1));
        assert_eq!(m.class("2"), None);
        let m: LabelMap = "Rotten/FRESH".parse().unwrap();
        assert_eq!(m.class("fresh"), Some(1));
        let m: LabelMap = "1|2/4|5".parse().unwrap();
        assert_eq!(m.class("2"), Some(0));
        assert_eq!(m.class("5"), Some(1));
        assert_eq!(m.class("3"), None);
        assert!("0".parse::<LabelMap>().is_err());
        assert!("1/1".parse::<LabelMap>().is_err());
    }
}
