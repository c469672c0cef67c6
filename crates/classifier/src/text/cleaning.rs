//! Text cleaning: the one function that prepares raw text, at training and at serving time.
//!
//! The settings are saved in the model folder (`pipeline.json`), and the api applies exactly
//! the steps the model was trained with: no train/serve skew.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The file beside the processed CSVs that records how their text was cleaned: preprocess
/// writes it, and `train` copies it into the model folder so that serving cleans alike.
pub const CLEANING_FILE: &str = "cleaning.json";

static HTML_BREAK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)<br\s*/?>").expect("valid regex"));
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:https?://|www\.)\S+").expect("valid regex"));
static MENTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"@\w+").expect("valid regex"));
static PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^\w\s]").expect("valid regex"));
static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));

/// Passes of entity decoding, one level of escaping each. The tweets here are escaped once
/// (`&amp;`), re-posted text sometimes twice; the bound keeps a crafted request (`&amp;amp;amp;...`, one level per pass) from costing a
/// pass over the whole body per level.
const ENTITY_PASSES: usize = 4;

/// Which cleaning steps run, in the order of the fields. Missing keys in a saved file take
/// their defaults (a step added later: off), so older model folders load and serve as trained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cleaning {
    /// Decode HTML character references (`&amp;`, `&lt;3`, `&#39;`), which tweets from the
    /// Twitter API and scraped reviews carry, through up to four levels of escaping, so
    /// that double-escaped text (`&amp;lt;`) decodes fully and a second cleaning changes
    /// nothing. A saved file without the key turns it off: models trained before this step
    /// serve as trained.
    #[serde(default)]
    pub decode_html_entities: bool,
    /// Unicode NFC, so that "é" typed two ways is one token.
    pub unicode_nfc: bool,
    /// `<br />` and friends (IMDB reviews are full of them) become spaces.
    pub html_line_breaks: bool,
    /// Remove `http(s)://...` and `www....` links.
    pub strip_urls: bool,
    /// Remove `@user` mentions.
    pub strip_mentions: bool,
    /// Remove the `#` of hashtags, keeping the word.
    pub strip_hash_signs: bool,
    pub lowercase: bool,
    /// Remove every character that is neither a word character nor whitespace. Off by
    /// default: "!", "?" and emoticons carry sentiment, and BERT was pretrained with them.
    pub strip_punctuation: bool,
    /// Collapse runs of whitespace into one space and trim the ends.
    pub normalize_whitespace: bool,
}

impl Default for Cleaning {
    fn default() -> Self {
        Self {
            decode_html_entities: true,
            unicode_nfc: true,
            html_line_breaks: true,
            strip_urls: true,
            strip_mentions: true,
            strip_hash_signs: true,
            lowercase: true,
            strip_punctuation: false,
            normalize_whitespace: true,
        }
    }
}

impl Cleaning {
    /// No step at all: text passes through unchanged.
    pub fn none() -> Self {
        Self {
            decode_html_entities: false,
            unicode_nfc: false,
            html_line_breaks: false,
            strip_urls: false,
            strip_mentions: false,
            strip_hash_signs: false,
            lowercase: false,
            strip_punctuation: false,
            normalize_whitespace: false,
        }
    }

    /// Applies the enabled steps to `text`.
    pub fn clean(&self, text: &str) -> String {
        let mut s: Cow<str> = Cow::Borrowed(text);
        if self.decode_html_entities {
            for _ in 0..ENTITY_PASSES {
                // Owned only when the pass decoded something.
                match html_escape::decode_html_entities(&s) {
                    Cow::Owned(decoded) => s = Cow::Owned(decoded),
                    Cow::Borrowed(_) => break,
                }
            }
        }
        if self.unicode_nfc && is_nfc_quick(s.chars()) != IsNormalized::Yes {
            s = Cow::Owned(s.nfc().collect());
        }
        let replace = |s: Cow<'_, str>, re: &Regex, with: &str| -> Cow<'static, str> {
            Cow::Owned(re.replace_all(&s, with).into_owned())
        };
        if self.html_line_breaks {
            s = replace(s, &HTML_BREAK, " ");
        }
        if self.strip_urls {
            s = replace(s, &URL, "");
        }
        if self.strip_mentions {
            s = replace(s, &MENTION, "");
        }
        if self.strip_hash_signs && s.contains('#') {
            s = Cow::Owned(s.replace('#', ""));
        }
        if self.lowercase {
            s = Cow::Owned(s.to_lowercase());
        }
        if self.strip_punctuation {
            s = replace(s, &PUNCTUATION, "");
        }
        if self.normalize_whitespace {
            s = Cow::Owned(WHITESPACE.replace_all(s.trim(), " ").into_owned());
        }
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_steps() {
        let c = Cleaning::default();
        assert_eq!(
            c.clean("  Loved it!<br /><br />See https://x.co/a @bob #Best\tfilm  "),
            "loved it! see best film"
        );
        // NFC: e + combining acute becomes one code point.
        assert_eq!(c.clean("cafe\u{301}"), "caf\u{e9}");
        assert_eq!(c.clean("Fish &amp; chips &lt;3"), "fish & chips <3");
    }

    #[test]
    fn html_entities_decode_fully_and_only_when_asked() {
        let on = Cleaning {
            decode_html_entities: true,
            ..Cleaning::none()
        };
        // Double-escaped, as tweets re-posted through HTML often are.
        assert_eq!(on.clean("&amp;lt;3 &amp;amp;"), "<3 &");
        assert_eq!(on.clean("don&#39;t &#x1F600;"), "don't \u{1F600}");
        // Not references: left alone.
        assert_eq!(on.clean("AT&T & co &madeup;"), "AT&T & co &madeup;");
        assert_eq!(Cleaning::none().clean("&amp;lt;3"), "&amp;lt;3");
        // Each pass peels one level; a crafted chain keeps all but the first few.
        let deep = format!("&{}lt;", "amp;".repeat(100_000));
        assert_eq!(
            on.clean(&deep),
            format!("&{}lt;", "amp;".repeat(100_000 - ENTITY_PASSES))
        );
    }

    #[test]
    fn each_step_switches_independently() {
        let text = "Hi @Ann, WWW.example.com #Wow!";
        assert_eq!(Cleaning::none().clean(text), text);
        let only = |f: fn(&mut Cleaning)| {
            let mut c = Cleaning::none();
            f(&mut c);
            c.clean(text)
        };
        assert_eq!(
            only(|c| c.lowercase = true),
            "hi @ann, www.example.com #wow!"
        );
        assert_eq!(only(|c| c.strip_urls = true), "Hi @Ann,  #Wow!");
        assert_eq!(
            only(|c| c.strip_mentions = true),
            "Hi , WWW.example.com #Wow!"
        );
        assert_eq!(
            only(|c| c.strip_hash_signs = true),
            "Hi @Ann, WWW.example.com Wow!"
        );
        assert_eq!(
            only(|c| c.strip_punctuation = true),
            "Hi Ann WWWexamplecom Wow"
        );
    }

    #[test]
    fn the_originals_steps_reproduce_its_output() {
        // lowercase, strip URLs, @mentions, '#', punctuation: the Python seed's clean_text.
        let c = Cleaning {
            strip_punctuation: true,
            ..Cleaning::default()
        };
        assert_eq!(
            c.clean("@JetBlue Worst. Flight. Ever!! #fail http://t.co/x"),
            "worst flight ever fail"
        );
    }

    /// Processed data is stored cleaned and the api cleans raw text again: cleaning twice
    /// must change nothing, or serving would see text unlike training's.
    #[test]
    fn cleaning_is_idempotent() {
        let texts = [
            "Loved it!<br />See https://x.co/a @bob #Best film",
            "a@b.com wrote: #1 MOVIE!!! www.site.org/x?y=1 \u{301}e",
            "<BR>  tabs\tand\nnewlines  ",
            "@@mention ## hash # #",
            "AT&amp;T &amp;amp;lt;3 &#39;quoted&#39; &madeup; &#64;bob",
        ];
        for cfg in [
            Cleaning::default(),
            Cleaning {
                strip_punctuation: true,
                ..Cleaning::default()
            },
        ] {
            for t in texts {
                let once = cfg.clean(t);
                assert_eq!(cfg.clean(&once), once, "{t:?} with {cfg:?}");
            }
        }
    }

    #[test]
    fn missing_keys_take_defaults() {
        let c: Cleaning = serde_json::from_str(r#"{"lowercase": false}"#).unwrap();
        assert!(!c.lowercase);
        assert!(c.strip_urls);
        // A step added later stays off for model folders saved before it existed.
        assert!(!c.decode_html_entities);
        assert!(Cleaning::default().decode_html_entities);
    }
}
