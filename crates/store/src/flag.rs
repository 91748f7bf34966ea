//! Booleans read through the Any driver. PostgreSQL columns are BOOLEAN;
//! SQLite has no boolean type and returns 0/1 integers, which the Any
//! driver will not decode as `bool`. These wrappers accept both; row types
//! keep plain `bool` fields with `#[sqlx(try_from = "Flag")]`.

use sqlx::any::{AnyTypeInfo, AnyTypeInfoKind, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type, TypeInfo, ValueRef};

/// A boolean column or expression.
pub(crate) struct Flag(pub bool);

/// A nullable boolean (e.g. from a LEFT JOIN).
pub(crate) struct OptFlag(pub Option<bool>);

fn accepts(ty: &AnyTypeInfo) -> bool {
    ty.is_null()
        || matches!(
            ty.kind(),
            AnyTypeInfoKind::Bool
                | AnyTypeInfoKind::SmallInt
                | AnyTypeInfoKind::Integer
                | AnyTypeInfoKind::BigInt
        )
}

fn decode(value: AnyValueRef<'_>) -> Result<bool, BoxDynError> {
    if value.type_info().kind() == AnyTypeInfoKind::Bool {
        <bool as Decode<Any>>::decode(value)
    } else {
        Ok(<i64 as Decode<Any>>::decode(value)? != 0)
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        accepts(ty)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        decode(value).map(Flag)
    }
}

impl Type<Any> for OptFlag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        accepts(ty)
    }
}

impl<'r> Decode<'r, Any> for OptFlag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            Ok(OptFlag(None))
        } else {
            decode(value).map(|b| OptFlag(Some(b)))
        }
    }
}

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

impl From<OptFlag> for Option<bool> {
    fn from(f: OptFlag) -> Option<bool> {
        f.0
    }
}
