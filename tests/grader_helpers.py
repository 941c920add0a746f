"""A grader function for the callable-grader test (imported as tests.grader_helpers:mentions_query_id)."""


def mentions_query_id(reply: str, query) -> bool:
    return query.id in reply
