//! Sorting the driver's errors into [`EventSinkError`]s: retry later, or stop.

use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    NewSessionError, PrepareError, RequestAttemptError,
};

use crate::events::error::{EventSinkError, SinkOperation};

/// Whether the database answered with an error that no retry fixes: a
/// statement it does not accept (syntax, a missing table or keyspace),
/// authentication or permissions, or its configuration.
fn db_error_is_final(error: &DbError) -> bool {
    matches!(
        error,
        DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::AuthenticationError
            | DbError::Unauthorized
            | DbError::ConfigError
            | DbError::ProtocolError
    )
}

fn attempt_is_final(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::DbError(db_error, _) => db_error_is_final(db_error),
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => true,
        _ => false,
    }
}

fn connection_is_final(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::ConnectionSetupRequestError(setup) => matches!(
            setup.get_error(),
            ConnectionSetupRequestErrorKind::DbError(DbError::AuthenticationError, _)
                | ConnectionSetupRequestErrorKind::DbError(DbError::Unauthorized, _)
                | ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
                | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
                | ConnectionSetupRequestErrorKind::AuthFinishError(_)
                | ConnectionSetupRequestErrorKind::MissingAuthentication
        ),
        _ => false,
    }
}

fn pool_is_final(error: &ConnectionPoolError) -> bool {
    match error {
        ConnectionPoolError::Broken {
            last_connection_error,
        } => connection_is_final(last_connection_error),
        _ => false,
    }
}

fn prepare_is_final(error: &PrepareError) -> bool {
    match error {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_final(first_attempt),
        PrepareError::ConnectionPoolError(pool) => pool_is_final(pool),
        _ => false,
    }
}

/// Whether an execution error needs an operator rather than time.
pub(crate) fn execution_is_final(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(attempt) => attempt_is_final(attempt),
        ExecutionError::PrepareError(prepare) => prepare_is_final(prepare),
        ExecutionError::ConnectionPoolError(pool) => pool_is_final(pool),
        _ => false,
    }
}

/// Whether the database said the statement names a keyspace or table it does
/// not have.
pub(crate) fn is_missing_schema(error: &ExecutionError) -> bool {
    let message = match error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            message,
        )) => message,
        ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(DbError::Invalid, message),
        }) => message,
        _ => return false,
    };
    let message = message.to_ascii_lowercase();
    message.contains("unconfigured table") || message.contains("does not exist")
}

/// An execution error as the sink reports it.
pub(crate) fn execution(
    cluster: &str,
    operation: SinkOperation,
    error: ExecutionError,
) -> EventSinkError {
    let is_final = execution_is_final(&error);
    cluster_error(cluster, operation, is_final, error)
}

/// A preparation error as the sink reports it.
pub(crate) fn prepare(cluster: &str, error: PrepareError) -> EventSinkError {
    let is_final = prepare_is_final(&error);
    cluster_error(cluster, SinkOperation::Open, is_final, error)
}

/// A failure to open a session as the sink reports it: refused credentials
/// and a bad configuration are final, everything else (no node answers, DNS)
/// may pass.
pub(crate) fn new_session(cluster: &str, error: NewSessionError) -> EventSinkError {
    let is_final = match &error {
        NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_) => true,
        NewSessionError::MetadataError(scylla::errors::MetadataError::ConnectionPoolError(
            pool,
        )) => pool_is_final(pool),
        NewSessionError::UseKeyspaceError(_) => true,
        _ => false,
    };
    cluster_error(cluster, SinkOperation::Open, is_final, error)
}

/// Any other driver error met while reading rows (a page that failed, a row
/// of an unexpected type): retryable when it came from the network.
pub(crate) fn read<E>(cluster: &str, error: E, retryable: bool) -> EventSinkError
where
    E: std::error::Error + Send + Sync + 'static,
{
    cluster_error(cluster, SinkOperation::Read, !retryable, error)
}

/// `ClusterRefused` for an error that will not pass by itself, `ClusterUnavailable`
/// (retryable) for one that may.
fn cluster_error<E>(
    cluster: &str,
    operation: SinkOperation,
    is_final: bool,
    error: E,
) -> EventSinkError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let cluster = cluster.to_string();
    let source = Box::new(error);
    if is_final {
        EventSinkError::ClusterRefused {
            cluster,
            operation,
            source,
        }
    } else {
        EventSinkError::ClusterUnavailable {
            cluster,
            operation,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_answers_are_sorted_into_retry_or_stop() {
        for (error, is_final) in [
            (DbError::Overloaded, false),
            (DbError::IsBootstrapping, false),
            (DbError::ServerError, false),
            (DbError::SyntaxError, true),
            (DbError::Invalid, true),
            (DbError::Unauthorized, true),
            (DbError::AuthenticationError, true),
        ] {
            let execution = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                error.clone(),
                "x".into(),
            ));
            assert_eq!(execution_is_final(&execution), is_final, "{error:?}");
            let sorted = super::execution("n:9042/k", SinkOperation::Write, execution);
            assert_eq!(sorted.is_retryable(), !is_final, "{error:?}");
        }
        let timeout = ExecutionError::RequestTimeout(std::time::Duration::from_secs(2));
        assert!(super::execution("n", SinkOperation::Write, timeout).is_retryable());
        let unreachable = NewSessionError::FailedToResolveAnyHostname(vec!["nowhere:9042".into()]);
        assert!(new_session("nowhere:9042", unreachable).is_retryable());
        assert!(!new_session("x", NewSessionError::EmptyKnownNodesList).is_retryable());
    }

    #[test]
    fn a_missing_table_or_keyspace_is_told_apart() {
        let missing = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "unconfigured table schema_version".into(),
        ));
        assert!(is_missing_schema(&missing));
        let other = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "Invalid STRING constant".into(),
        ));
        assert!(!is_missing_schema(&other));
    }
}
