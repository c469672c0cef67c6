//! Mapping a data set's own label values to class indices: negative (0) / positive (1) by
//! default, or any number of classes (negative/neutral/positive, star ratings).

use std::fmt;
use std::str::FromStr;

/// `A/B[/C...]`, one side per class in class-index order, each side one or more values joined
/// by `|`, compared case-insensitively after trimming; numbers compare by value (`1.0` = `1`).
/// Anything else is not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    classes: Vec<Vec<String>>,
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
        self.classes.iter().position(|values| values.contains(&v))
    }

    /// How many classes the map has.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The class names when none are given: negative/positive for two classes,
    /// negative/neutral/positive for three, else each class's first value (`1`, `2`, ...).
    pub fn default_names(&self) -> Vec<String> {
        let named: &[&str] = match self.num_classes() {
            2 => &["negative", "positive"],
            3 => &["negative", "neutral", "positive"],
            _ => &[],
        };
        if !named.is_empty() {
            return named.iter().map(|s| s.to_string()).collect();
        }
        self.classes
            .iter()
            .map(|values| values[0].clone())
            .collect()
    }

    /// The map for `pos/` and `neg/` folders.
    pub fn folders() -> Self {
        "neg/pos".parse().expect("valid")
    }
}

impl FromStr for LabelMap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let classes: Vec<Vec<String>> = s
            .split('/')
            .map(|side| {
                side.split('|')
                    .map(normalize)
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .collect();
        if classes.len() < 2 {
            return Err(format!(
                "label map `{s}` is not NEG/POS or one side per class (e.g. 0/1, 0/4, \
                 negative/positive, negative/neutral/positive, 1|2/3/4|5)"
            ));
        }
        if classes.iter().any(Vec::is_empty) {
            return Err(format!("label map `{s}` needs values on every side of `/`"));
        }
        for (i, values) in classes.iter().enumerate() {
            if let Some(v) = values
                .iter()
                .find(|v| classes[..i].iter().any(|c| c.contains(v)))
            {
                return Err(format!("label map `{s}` names `{v}` in two classes"));
            }
        }
        Ok(Self { classes })
    }
}

impl fmt::Display for LabelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sides: Vec<String> = self.classes.iter().map(|v| v.join("|")).collect();
        write!(f, "{}", sides.join("/"))
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
        assert_eq!(m.default_names(), ["negative", "positive"]);
    }

    #[test]
    fn any_number_of_classes() {
        let m: LabelMap = "negative/neutral/positive".parse().unwrap();
        assert_eq!((m.num_classes(), m.class("Neutral")), (3, Some(1)));
        assert_eq!(m.default_names(), ["negative", "neutral", "positive"]);
        let stars: LabelMap = "1|2/3/4|5".parse().unwrap();
        assert_eq!(stars.class("3.0"), Some(1));
        assert_eq!(stars.class("5"), Some(2));
        let five: LabelMap = "1/2/3/4/5".parse().unwrap();
        assert_eq!(five.default_names(), ["1", "2", "3", "4", "5"]);
        assert_eq!(five.to_string(), "1/2/3/4/5");
        let err = "a/b/a".parse::<LabelMap>().unwrap_err();
        assert!(err.contains("`a` in two classes"), "{err}");
        assert!("a//b".parse::<LabelMap>().is_err());
    }
}
