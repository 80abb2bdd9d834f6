//! Tenant, namespace and topic names.
//!
//! Owns the naming rules (Pulsar's: ASCII letters, digits, `-`, `_`, `.`, `=`, `:`; never `.` or
//! `..`; at most [`MAX_NAME_LEN`] bytes) and the parsing of `tenant/namespace/topic` and
//! `persistent://tenant/namespace/topic` strings. It knows nothing about disks or mounts.

use std::fmt;

/// Longest tenant, namespace or topic name, in bytes (one path component on disk).
pub const MAX_NAME_LEN: usize = 255;
/// The one tenant name tierfs keeps for itself: the folder of the bucket's catalog.
pub const RESERVED_TENANT: &str = "_tierfs";

/// Which level of the hierarchy a name belongs to; used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Tenant,
    Namespace,
    Topic,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Tenant => "tenant",
            NameKind::Namespace => "namespace",
            NameKind::Topic => "topic",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: NameKind },
    #[error("{kind} name {name:?} is reserved")]
    Reserved { kind: NameKind, name: String },
    #[error("{kind} name is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { kind: NameKind, len: usize },
    #[error(
        "{kind} name {name:?} contains {bad:?}; allowed are letters, digits and the characters - _ . = :"
    )]
    BadCharacter {
        kind: NameKind,
        name: String,
        bad: char,
    },
    #[error(
        "{input:?} is not a topic name; expected tenant/namespace/topic or persistent://tenant/namespace/topic"
    )]
    BadTopicPath { input: String },
    #[error("{input:?} is not a namespace name; expected tenant/namespace")]
    BadNamespacePath { input: String },
}

/// Checks one name against Pulsar's rules.
pub fn validate(kind: NameKind, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    // `_tierfs` holds the bucket's catalog under the offload prefix, beside the tenants.
    let reserved_tenant = kind == NameKind::Tenant && name == RESERVED_TENANT;
    if name == "." || name == ".." || reserved_tenant {
        return Err(NameError::Reserved {
            kind,
            name: name.to_string(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    if let Some(bad) = name.chars().find(|c| !is_allowed(*c)) {
        return Err(NameError::BadCharacter {
            kind,
            name: name.escape_debug().to_string(),
            bad,
        });
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ':')
}

/// A namespace: `tenant/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName {
    pub tenant: String,
    pub namespace: String,
}

impl NamespaceName {
    pub fn new(tenant: &str, namespace: &str) -> Result<Self, NameError> {
        validate(NameKind::Tenant, tenant)?;
        validate(NameKind::Namespace, namespace)?;
        Ok(Self {
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// Parses `tenant/namespace`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        match input.split('/').collect::<Vec<_>>().as_slice() {
            [tenant, namespace] => Self::new(tenant, namespace),
            _ => Err(NameError::BadNamespacePath {
                input: input.to_string(),
            }),
        }
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.namespace)
    }
}

/// A topic: `tenant/namespace/topic`; displayed as the short form, see [`TopicName::persistent`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub tenant: String,
    pub namespace: String,
    pub topic: String,
}

impl TopicName {
    pub fn new(tenant: &str, namespace: &str, topic: &str) -> Result<Self, NameError> {
        validate(NameKind::Tenant, tenant)?;
        validate(NameKind::Namespace, namespace)?;
        validate(NameKind::Topic, topic)?;
        Ok(Self {
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
        })
    }

    /// Parses `tenant/namespace/topic`, optionally prefixed with `persistent://`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let path = input.strip_prefix("persistent://").unwrap_or(input);
        match path.split('/').collect::<Vec<_>>().as_slice() {
            [tenant, namespace, topic] => Self::new(tenant, namespace, topic),
            _ => Err(NameError::BadTopicPath {
                input: input.to_string(),
            }),
        }
    }

    /// The namespace this topic lives in.
    pub fn namespace_name(&self) -> NamespaceName {
        NamespaceName {
            tenant: self.tenant.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// Pulsar's full name: `persistent://tenant/namespace/topic`.
    pub fn persistent(&self) -> String {
        format!("persistent://{self}")
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pulsar_names() {
        for name in [
            "public",
            "my-tenant",
            "ns_1",
            "a.b",
            "k=v",
            "host:8080",
            "A9",
        ] {
            assert_eq!(validate(NameKind::Tenant, name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(
            validate(NameKind::Topic, ""),
            Err(NameError::Empty {
                kind: NameKind::Topic
            })
        );
        for name in [".", ".."] {
            assert!(matches!(
                validate(NameKind::Topic, name),
                Err(NameError::Reserved { .. })
            ));
        }
        for name in ["a b", "a/b", "a*b", "tab\tname", "nul\0", "é", "new\nline"] {
            assert!(
                matches!(
                    validate(NameKind::Namespace, name),
                    Err(NameError::BadCharacter { .. })
                ),
                "{name:?}"
            );
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            validate(NameKind::Tenant, &long),
            Err(NameError::TooLong { len: 256, .. })
        ));
        assert_eq!(
            validate(NameKind::Tenant, &"x".repeat(MAX_NAME_LEN)),
            Ok(())
        );
    }

    #[test]
    fn parses_topic_paths() {
        let t = TopicName::parse("persistent://t/ns/topic").unwrap();
        assert_eq!(t.to_string(), "t/ns/topic");
        assert_eq!(t.persistent(), "persistent://t/ns/topic");
        assert_eq!(TopicName::parse("t/ns/topic").unwrap(), t);
        assert!(matches!(
            TopicName::parse("t/ns"),
            Err(NameError::BadTopicPath { .. })
        ));
        assert!(matches!(
            TopicName::parse("t/ns/a/b"),
            Err(NameError::BadTopicPath { .. })
        ));
        assert!(TopicName::parse("t/../x").is_err());
        assert_eq!(NamespaceName::parse("t/ns").unwrap().to_string(), "t/ns");
        assert!(NamespaceName::parse("t").is_err());
    }

    #[test]
    fn the_catalog_folder_is_no_tenant() {
        assert!(matches!(
            validate(NameKind::Tenant, RESERVED_TENANT),
            Err(NameError::Reserved { .. })
        ));
        assert!(validate(NameKind::Namespace, RESERVED_TENANT).is_ok());
        assert!(validate(NameKind::Topic, RESERVED_TENANT).is_ok());
    }
}
