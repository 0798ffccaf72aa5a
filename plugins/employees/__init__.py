"""The sample protected resource: an employees CRUD API."""

from .handlers import EmployeeHandler, EmployeesHandler, seed

routes = [
    (r"/employees", EmployeesHandler),
    (r"/employees/([^/]+)", EmployeeHandler),
]
setup = seed
