//! A bound on what a document expands to while it is read. YAML aliases let
//! a small file stand for a huge configuration: a 343 KB file reusing one
//! 1,000-domain anchor in 10,000 virtual hosts is 10,000,000 domains. Reading
//! counts each value and each byte of each string as it is made, and stops
//! at the bound, so such a file costs what the bound allows, not what it
//! expands to.
//!
//! The counting wraps any serde `Deserializer`: every value the document
//! yields, aliases followed, passes through [`Counted`].

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// The most values and string bytes a document of `len` bytes may expand
/// to: 4 per byte of the document, which a document without aliases never
/// reaches (each value and string byte takes at least one byte to write),
/// and 1 Mi more for aliases used with moderation.
pub(super) fn limit_for(len: usize) -> usize {
    len.saturating_mul(4).saturating_add(1 << 20)
}

/// `T` read from `deserializer`, refused once it has made more than `limit`
/// values and string bytes.
pub(super) fn deserialize<'de, T, D>(deserializer: D, limit: usize) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let budget = Budget {
        left: Cell::new(limit),
        limit,
    };
    T::deserialize(Bounded {
        inner: deserializer,
        budget: &budget,
    })
}

struct Budget {
    left: Cell<usize>,
    limit: usize,
}

impl Budget {
    fn charge<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom(format_args!(
                    "the document expands to more than {} values and string bytes \
                     (YAML aliases repeating a large node?): refused",
                    self.limit
                )))
            }
        }
    }
}

/// A deserializer whose every value is counted.
struct Bounded<'b, D> {
    inner: D,
    budget: &'b Budget,
}

/// A visitor that counts what it is given, and counts inside it.
struct Counted<'b, V> {
    inner: V,
    budget: &'b Budget,
}

/// A seed whose value is counted.
struct Seeded<'b, S> {
    inner: S,
    budget: &'b Budget,
}

/// Sequence, map, enum and variant access whose elements are counted.
struct Access<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'b, D> Bounded<'b, D> {
    fn counted<V>(&self, visitor: V) -> Counted<'b, V> {
        Counted {
            inner: visitor,
            budget: self.budget,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.counted(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! count_scalar {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.budget.charge(1)?;
            self.inner.$method(v)
        }
    )*};
}

macro_rules! count_text {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.budget.charge(1 + v.len())?;
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Counted<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    count_scalar! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
    }

    count_text! {
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.budget.charge(1)?;
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.budget.charge(1)?;
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.budget.charge(1)?;
        self.inner.visit_some(Bounded {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.budget.charge(1)?;
        self.inner.visit_newtype_struct(Bounded {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.budget.charge(1)?;
        self.inner.visit_seq(Access {
            inner: seq,
            budget: self.budget,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.budget.charge(1)?;
        self.inner.visit_map(Access {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.budget.charge(1)?;
        self.inner.visit_enum(Access {
            inner: data,
            budget: self.budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Bounded {
            inner: d,
            budget: self.budget,
        })
    }
}

impl<'b, A> Access<'b, A> {
    fn seeded<S>(&self, seed: S) -> Seeded<'b, S> {
        Seeded {
            inner: seed,
            budget: self.budget,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.seeded(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seeded(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seeded(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Access<'b, A> {
    type Error = A::Error;
    type Variant = Access<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let seed = self.seeded(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Access {
                inner: variant,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seeded(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = Counted {
            inner: visitor,
            budget: self.budget,
        };
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Counted {
            inner: visitor,
            budget: self.budget,
        };
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str, limit: usize) -> Result<yaml_serde::Value, String> {
        deserialize(yaml_serde::Deserializer::from_str(yaml), limit).map_err(|e| e.to_string())
    }

    #[test]
    fn aliases_are_counted_as_what_they_expand_to() {
        let yaml =
            "a: &x [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: [*x, *x, *x, *x, *x, *x, *x, *x, *x, *x]";
        // 1 map, 2 keys of 2 units, 12 lists, 110 numbers.
        assert!(read(yaml, 127).is_ok());
        let error = read(yaml, 126).unwrap_err();
        assert!(error.contains("expands to more than 126 values"), "{error}");
    }

    #[test]
    fn a_small_file_reusing_a_large_anchor_is_refused_fast() {
        // As the 343 KB file that took 11.6 s and 3.4 GB: one 1,000-domain
        // anchor in 10,000 virtual hosts.
        let domains: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
        let mut yaml = format!(
            "virtual_hosts:\n  - {{ name: h0, domains: &d [{}] }}\n",
            domains.join(", ")
        );
        for i in 1..10_000 {
            yaml.push_str(&format!("  - {{ name: h{i}, domains: *d }}\n"));
        }
        let start = std::time::Instant::now();
        let error = crate::config::MeshConfig::from_yaml(&yaml)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the document expands to more than"),
            "{error}"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // Moderate reuse is read: two hosts sharing the anchor get to
        // validation, which refuses the domains they share.
        let mut yaml = format!(
            "virtual_hosts:\n  - {{ name: h0, domains: &d [{}] }}\n",
            domains.join(", ")
        );
        yaml.push_str("  - { name: h1, domains: *d }\n");
        let error = crate::config::MeshConfig::from_yaml(&yaml)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is also in virtual_host"), "{error}");
    }
}
