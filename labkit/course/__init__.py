"""Running a course: the class server and `lk.join`, the grader, the rendered book, and the git filter
that keeps lesson notebooks clean."""
