//! Terser-style paths: `SEG[(occurrence)]-field[(repetition)][.component[.subcomponent]]`,
//! e.g. `PID-3(2).4.2`, `OBX(3)-5`, `PID-5.1`. Occurrences and repetitions
//! count from 1.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub segment: String,
    pub occurrence: usize,
    pub field: usize,
    pub repetition: usize,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path `{path}`: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

fn number_with_index(text: &str) -> Option<(usize, usize)> {
    match text.split_once('(') {
        Some((number, rest)) => {
            let index = rest.strip_suffix(')')?.parse().ok()?;
            Some((number.parse().ok()?, index))
        }
        None => Some((text.parse().ok()?, 1)),
    }
}

pub fn parse_path(text: &str) -> Result<Path, PathError> {
    let fail = |reason| PathError {
        path: text.to_string(),
        reason,
    };
    let (segment_part, rest) = text
        .split_once('-')
        .ok_or_else(|| fail("no `-` after the segment"))?;
    let (segment, occurrence) = match segment_part.split_once('(') {
        Some((name, index)) => (
            name,
            index
                .strip_suffix(')')
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| fail("bad segment occurrence"))?,
        ),
        None => (segment_part, 1),
    };
    if segment.len() != 3
        || !segment
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(fail("segment ID must be 3 upper-case letters or digits"));
    }
    let mut parts = rest.split('.');
    let (field, repetition) =
        number_with_index(parts.next().unwrap_or("")).ok_or_else(|| fail("bad field number"))?;
    let component = parts
        .next()
        .map(|c| c.parse::<usize>().map_err(|_| fail("bad component number")))
        .transpose()?;
    let subcomponent = parts
        .next()
        .map(|c| {
            c.parse::<usize>()
                .map_err(|_| fail("bad subcomponent number"))
        })
        .transpose()?;
    if parts.next().is_some() {
        return Err(fail("too many parts"));
    }
    if field == 0
        || occurrence == 0
        || repetition == 0
        || component == Some(0)
        || subcomponent == Some(0)
    {
        return Err(fail("numbers count from 1"));
    }
    Ok(Path {
        segment: segment.to_string(),
        occurrence,
        field,
        repetition,
        component,
        subcomponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terser_paths() {
        let p = parse_path("PID-3(2).4.2").unwrap();
        assert_eq!(
            (
                p.segment.as_str(),
                p.occurrence,
                p.field,
                p.repetition,
                p.component,
                p.subcomponent
            ),
            ("PID", 1, 3, 2, Some(4), Some(2))
        );
        let p = parse_path("OBX(3)-5").unwrap();
        assert_eq!((p.occurrence, p.field, p.component), (3, 5, None));
        assert!(parse_path("PID").is_err());
        assert!(parse_path("PID-0").is_err());
        assert!(parse_path("pid-1").is_err());
        assert!(parse_path("PID-1.2.3.4").is_err());
        assert!(parse_path("PID(x)-1").is_err());
    }
}
